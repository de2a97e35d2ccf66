"""Deterministic, multilingual seed data: canonical people, companies, tickets, orders and articles in
five locales, the same for a given seed in every run, which each simulator renders in its vendor's
shape; change times come in groups of equal seconds to exercise cursor tie-breaking."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

SEED_EPOCH = int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp())


def seed_ts(i: int) -> int:
    """Seeded change times come in groups of three equal seconds, to exercise cursor tie-breaking."""
    return SEED_EPOCH + (i // 3) * 37


LOCALES = ("en", "de", "fr", "es", "ja")
_FIRST = {
    "en": ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry"),
    "de": ("Jürgen", "Anna", "Lukas", "Sophie", "Matthias", "Lea", "Jonas", "Marie"),
    "fr": ("Amélie", "Louis", "Chloé", "Hugo", "Léa", "Théo", "Manon", "Gabriel"),
    "es": ("Lucía", "Mateo", "Sofía", "Martín", "Valeria", "Hugo", "Martina", "Pablo"),
    "ja": ("陽翔", "結衣", "蓮", "陽菜", "湊", "凛", "大翔", "さくら"),
}
_LAST = {
    "en": ("Smith", "Johnson", "Brown", "Taylor", "Wilson", "Clark"),
    "de": ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Größer"),
    "fr": ("Martin", "Bernard", "Dubois", "Lefèvre", "Moreau", "Girard"),
    "es": ("García", "Fernández", "López", "Martínez", "Sánchez", "Pérez"),
    "ja": ("佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺"),
}
_COUNTRY = {"en": "US", "de": "DE", "fr": "FR", "es": "ES", "ja": "JP"}
_COMPANY = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Soylent", "Zenith")
_SUFFIX = {"en": "Inc.", "de": "GmbH", "fr": "SARL", "es": "S.L.", "ja": "株式会社"}
_INDUSTRY = ("Manufacturing", "Retail", "Finance", "Healthcare", "Energy", "Technology")
_SUBJECT = {
    "en": ("Cannot log in", "Invoice is wrong", "Delivery is late", "Product arrived damaged"),
    "de": ("Anmeldung nicht möglich", "Rechnung ist falsch", "Lieferung verspätet", "Ware beschädigt"),
    "fr": ("Connexion impossible", "Facture erronée", "Livraison en retard", "Produit endommagé"),
    "es": ("No puedo iniciar sesión", "Factura incorrecta", "Entrega retrasada", "Producto dañado"),
    "ja": ("ログインできません", "請求書が間違っています", "配送が遅れています", "商品が破損しています"),
}
_ARTICLE = {
    "en": ("How to reset your password", "Return policy", "Shipping times", "Warranty terms"),
    "de": ("Passwort zurücksetzen", "Rückgaberecht", "Lieferzeiten", "Garantiebedingungen"),
    "fr": ("Réinitialiser votre mot de passe", "Politique de retour", "Délais de livraison", "Garantie"),
    "es": ("Cómo restablecer su contraseña", "Política de devoluciones", "Plazos de envío", "Garantía"),
    "ja": ("パスワードの再設定方法", "返品ポリシー", "配送日数", "保証条件"),
}
ORDER_STATUSES = ("Draft", "Activated", "Shipped", "Delivered", "Cancelled")
TICKET_STATUSES = ("New", "Working", "Escalated", "Closed")


class Seed:
    """Deterministic canonical seed rows; each simulator renders them in its vendor's shape."""

    def __init__(self, seed: int = 42) -> None:
        self.seed = seed

    def _rng(self, kind: str, i: int) -> random.Random:
        return random.Random(f"{self.seed}:{kind}:{i}")  # noqa: S311 - deterministic seed data

    def person(self, i: int) -> dict[str, Any]:
        rng = self._rng("person", i)
        loc = LOCALES[i % len(LOCALES)]
        first, last = rng.choice(_FIRST[loc]), rng.choice(_LAST[loc])
        return {
            "first_name": first,
            "last_name": last,
            "email": f"contact{i}@example-{loc}.test",
            "phone": f"+{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
            "locale": loc,
            "country": _COUNTRY[loc],
            "company_index": rng.randrange(10_000),
        }

    def company(self, i: int) -> dict[str, Any]:
        rng = self._rng("company", i)
        loc = LOCALES[i % len(LOCALES)]
        return {
            "name": f"{rng.choice(_COMPANY)} {i} {_SUFFIX[loc]}",
            "website": f"https://company{i}.example-{loc}.test",
            "country": _COUNTRY[loc],
            "industry": rng.choice(_INDUSTRY),
            "locale": loc,
        }

    def ticket(self, i: int) -> dict[str, Any]:
        rng = self._rng("ticket", i)
        loc = LOCALES[i % len(LOCALES)]
        subject = rng.choice(_SUBJECT[loc])
        return {
            "subject": subject,
            "description": f"{subject} (#{i})",
            "status": rng.choice(TICKET_STATUSES),
            "priority": rng.choice(("1", "2", "3", "4")),
            "locale": loc,
            "person_index": rng.randrange(10_000),
        }

    def order(self, i: int) -> dict[str, Any]:
        rng = self._rng("order", i)
        return {
            "number": f"{i + 1:08d}",
            "status": rng.choice(ORDER_STATUSES),
            "amount": round(rng.uniform(10, 5000), 2),
            "currency": rng.choice(("EUR", "USD", "JPY", "GBP")),
            "company_index": rng.randrange(10_000),
        }

    def article(self, i: int) -> dict[str, Any]:
        loc = LOCALES[i % len(LOCALES)]
        topic = (i // len(LOCALES)) % len(_ARTICLE[loc])
        title = _ARTICLE[loc][topic]
        return {
            "title": f"{title} ({i // len(LOCALES)})",
            "body": f"<p>{title}.</p><p>Article {i}, locale {loc}.</p>",
            "locale": loc,
            "url_name": f"article-{i // len(LOCALES)}-{loc}",
        }


DEFAULT_COUNTS: dict[str, int] = {
    "contacts": 10_000,
    "accounts": 10_000,
    "tickets": 10_000,
    "orders": 10_000,
    "articles": 300,
    "leads": 0,
}
