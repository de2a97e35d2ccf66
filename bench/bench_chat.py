"""Chat API under load: turn latency and throughput next to two baselines served by the same gunicorn.

Set-up (dev services of HUB_HOME, a throwaway tenant `bench-chat-<random>` unless BENCH_CHAT_TENANT names one
to keep and reuse):
- the demo help center (apps/knowledge/demo_data, indexed with the real model) enlarged to BENCH_CHAT_ARTICLES
  (10,000) articles: synthetic articles in en plus one of de/fr/es/ja, one chunk per translation, bulk-loaded
  (COPY); a body is a headline plus three of eight stock sentences per language, so words are shared the
  way articles share them, not by every chunk. Embedding 20,000 synthetic texts with USE would take minutes
  on 2 cores, so a pool of 300 distinct headlines (5 locales x 10 topics x 6 products) is embedded with the
  real model and every synthetic chunk takes its headline's vector plus a little noise (renormalized);
  `synthetic.embed_ms_per_text` is measured and `synthetic.full_embed_estimate_s` says what embedding all of
  them would have cost;
- a web channel with every action allowed, one API key (chat scope), 50 synced orders for order status.

Server: gunicorn with hub.settings.production (secrets, hosts, metrics token and database/Redis URLs
pointing at the embedded services are passed in the environment), the metrics and warm-up hooks
(python:hub.gunicorn), 2 x cores + 1 single-threaded (sync) workers as deploy/gunicorn.conf.py and
`manage.py serve` run them by default, no access log, rate limits raised through HUB_CHAT_RATE_PER_KEY /
_PER_TENANT, HUB_BENCH_ENDPOINTS=1 for the baselines, one BLAS thread per process (OPENBLAS_NUM_THREADS=1,
see BLAS_THREADS). Clients send `X-Forwarded-Proto: https` as the TLS-terminating proxy of a deployment
would, so the production HTTPS redirect stays on.

Load: BENCH_CHAT_CLIENTS (32) channel clients (a small asyncio HTTP/1.1 client, so the load generator costs
little of the 2 shared cores; it keeps connections alive where the server does, and reconnects after sync
workers close them, as they do behind a proxy), each phase for BENCH_CHAT_SECONDS:
1. baseline `trivial`: GET /api/v1/bench/ping (API-key auth, chat scope, both throttles, nothing else);
2. baseline `one_select`: GET /api/v1/bench/select/<id> (the same, plus one SELECT by primary key);
3. `turns`: POST .../messages, each client in its own locale (en, de, fr, es, ja) and conversation (a new one
   every 25 turns), with an Idempotency-Key, mixing fresh knowledge questions (evaluation questions with two
   random topic words and a random made-up word: never asked before, answer-cache misses), repeated
   questions (answer-cache hits), small talk and order status;
4. `turns_metrics_off`: gunicorn restarted with HUB_METRICS_ENABLED=0, the same turn mix; then
   `turns_metrics_on_again` with metrics on, so the two "on" runs bracket the "off" one;
5. `turns_threaded_workers`: the same turns on 2 x cores workers of 4 threads (gthread), the configuration
   deploy/gunicorn.conf.py switches to when GUNICORN_THREADS > 1.
Before the warm-up, `first_turns_after_start`: 2 x workers concurrent knowledge turns on a fresh server (each
worker loads the embedding model on its first one). Per phase, the CPU the gunicorn workers and the
PostgreSQL/Redis servers spent per request (psutil), and `by_cpu` projects it to all cores.
Also, in this process with the dev settings: queries per turn kind (Django test client and
CaptureQueriesContext per database alias) and where the time of a turn goes (`Turn.timings` of the service).
Other agents may share the machine: `load_average` is recorded before and after.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import random
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

# One BLAS thread per process, as a web worker should run: numpy's OpenBLAS otherwise starts a thread per
# core in every gunicorn worker thread, and on a busy 2-core machine a 1.5 ms query embedding then takes
# 10-150 ms. Set before numpy loads (here and in the server's environment below).
BLAS_THREADS = os.environ.get("BENCH_CHAT_BLAS_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", BLAS_THREADS)
os.environ.setdefault("OMP_NUM_THREADS", BLAS_THREADS)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = int(os.environ.get("BENCH_CHAT_ARTICLES", "10000"))
CLIENTS = int(os.environ.get("BENCH_CHAT_CLIENTS", "32"))
SECONDS = float(os.environ.get("BENCH_CHAT_SECONDS", "20"))
WARMUP_SECONDS = float(os.environ.get("BENCH_CHAT_WARMUP_SECONDS", "10"))
WORKERS = int(os.environ.get("BENCH_CHAT_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
THREADS = int(os.environ.get("BENCH_CHAT_THREADS", "1"))
LOCALES = ["en", "de", "fr", "es", "ja"]
TURNS_PER_CONVERSATION = 25
# Share of each kind of turn in the mix (cumulative order below).
MIX = (("fresh", 0.40), ("repeated", 0.30), ("small_talk", 0.15), ("order_status", 0.15))
ORDERS = [f"{1000 + i:08d}" for i in range(50)]
# Order status needs a verified customer (docs/security.md, "End-user identity"): the bench's conversations
# start with an identity JWT of the orders' customer, minted once by _prepare.
BENCH_CUSTOMER = "bench.customer@example.com"
_IDENTITY: dict[str, str] = {}

_TOPICS = {
    "en": ["warranty", "battery", "charger", "delivery window", "gift card", "loyalty points", "invoice",
           "store pickup", "assembly", "subscription"],
    "de": ["Garantie", "Akku", "Ladegerät", "Lieferfenster", "Geschenkkarte", "Treuepunkte", "Rechnung",
           "Abholung im Geschäft", "Montage", "Abonnement"],
    "fr": ["garantie", "batterie", "chargeur", "créneau de livraison", "carte cadeau", "points fidélité",
           "facture", "retrait en magasin", "montage", "abonnement"],
    "es": ["garantía", "batería", "cargador", "franja de entrega", "tarjeta regalo", "puntos de fidelidad",
           "factura", "recogida en tienda", "montaje", "suscripción"],
    "ja": ["保証", "バッテリー", "充電器", "配達時間帯", "ギフトカード", "ポイント", "請求書", "店舗受け取り",
           "組み立て", "定期購入"],
}  # fmt: skip
_PRODUCTS = ["Trailblazer", "Nimbus", "Aurora", "Kestrel", "Solstice", "Meridian"]
_TEMPLATES = {
    "en": "{product}: {topic}. How the {topic} of the {product} series works.",
    "de": "{product}: {topic}. So funktioniert {topic} der Serie {product}.",
    "fr": "{product} : {topic}. Comment fonctionne {topic} de la gamme {product}.",
    "es": "{product}: {topic}. Cómo funciona {topic} de la serie {product}.",
    "ja": "{product}:{topic}。{product}シリーズの{topic}の仕組み。",
}
# Each synthetic body adds three of these, so no content word sits in every chunk (a template sentence
# repeated in all 20,000 chunks would make every full-text query match them all: a worst case, not a KB).
_SENTENCES = {
    "en": ["Keep the receipt.", "Register the device online.", "Check the label on the box.",
           "Updates install overnight.", "Colours may vary slightly.", "Spare parts are sold separately.",
           "The manual lists every setting.", "Our stores can help in person."],
    "de": ["Bewahren Sie den Beleg auf.", "Registrieren Sie das Gerät online.", "Prüfen Sie das Etikett.",
           "Updates laufen über Nacht.", "Farben können leicht abweichen.", "Ersatzteile gibt es einzeln.",
           "Das Handbuch nennt jede Einstellung.", "Unsere Filialen helfen vor Ort."],
    "fr": ["Conservez le ticket.", "Enregistrez l'appareil en ligne.", "Vérifiez l'étiquette.",
           "Les mises à jour se font la nuit.", "Les couleurs peuvent varier.",
           "Les pièces sont vendues à part.", "Le manuel décrit chaque réglage.",
           "Nos magasins vous aident sur place."],
    "es": ["Guarde el recibo.", "Registre el dispositivo en línea.", "Revise la etiqueta de la caja.",
           "Las actualizaciones se instalan de noche.", "Los colores pueden variar.",
           "Los repuestos se venden aparte.", "El manual describe cada ajuste.",
           "Nuestras tiendas le ayudan."],
    "ja": ["レシートを保管してください。", "製品をオンラインで登録してください。",
           "箱のラベルを確認してください。", "更新は夜間に行われます。", "色は多少異なる場合があります。",
           "部品は別売りです。", "説明書にすべての設定があります。", "店舗でもご相談いただけます。"],
}  # fmt: skip
_SMALL_TALK = {
    "en": ["Hello", "Thanks!", "Good morning"],
    "de": ["Hallo", "Danke!", "Guten Tag"],
    "fr": ["Bonjour", "Merci !", "Salut"],
    "es": ["Hola", "¡Gracias!", "Buenos días"],
    "ja": ["こんにちは", "ありがとう", "おはよう"],
}
_ORDER_ASK = {
    "en": "Where is my order {n}?",
    "de": "Wo ist meine Bestellung {n}?",
    "fr": "Où en est ma commande {n} ?",
    "es": "¿Dónde está mi pedido {n}?",
    "ja": "注文 {n} はどこですか?",
}


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
    import django

    django.setup()


def _questions() -> dict[str, list[str]]:
    by_locale: dict[str, list[str]] = {loc: [] for loc in LOCALES}
    for line in (ROOT / "tests/knowledge/eval/questions.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["locale"] in by_locale and not row.get("region"):
            by_locale[row["locale"]].append(row["question"])
    return by_locale


# --- set-up -----------------------------------------------------------------------------------------------
def _enlarge(tenant: Any, kb: Any, target: int) -> dict[str, Any]:
    """Synthetic articles up to `target`, one chunk per translation, vectors from a small embedded pool."""
    from django.db import connections, transaction
    from django.utils import timezone

    from apps.knowledge.chunking import ts_config
    from apps.knowledge.embeddings import get_provider
    from apps.knowledge.models import Article, Translation

    existing = Article.objects.filter(kb=kb).count()
    n = max(0, target - existing)
    pool_keys = [(loc, t, p) for loc in LOCALES for t in range(10) for p in range(len(_PRODUCTS))]
    pool_texts = [
        _TEMPLATES[loc].format(product=_PRODUCTS[p], topic=_TOPICS[loc][t]) for loc, t, p in pool_keys
    ]
    provider = get_provider()
    provider.embed(["warm up"])
    started = time.perf_counter()
    pool = np.asarray(provider.embed(pool_texts), dtype=np.float32)
    embed_s = time.perf_counter() - started
    index = {key: i for i, key in enumerate(pool_keys)}
    rng = np.random.default_rng(11)
    now = timezone.now()
    articles = Article.objects.bulk_create(
        [Article(kb=kb, key=f"syn-{i:05d}", tenant_id=tenant.id) for i in range(n)], batch_size=2000
    )
    specs = []  # (article, locale, topic, product)
    for i, article in enumerate(articles):
        topic, product = i % 10, (i // 10) % len(_PRODUCTS)
        for loc in ("en", LOCALES[1 + i % 4]):
            specs.append((article, loc, topic, product))
    pick = random.Random(13)
    translations = Translation.objects.bulk_create(
        [
            Translation(
                article=article,
                locale=loc,
                region="",
                title=f"{_PRODUCTS[product]} {article.key[4:]}: {_TOPICS[loc][topic]}",
                body=" ".join(
                    [
                        _TEMPLATES[loc].format(product=_PRODUCTS[product], topic=_TOPICS[loc][topic]),
                        *pick.sample(_SENTENCES[loc], 3),
                    ]
                ),
                status="published",
                published_at=now,
                tenant_id=tenant.id,
            )
            for article, loc, topic, product in specs
        ],
        batch_size=2000,
    )
    columns = (
        "tenant_id, kb_id, translation_id, article_key, locale, region, status, chunk_hash, position, title,"
        " heading_path, text, model_id, embedding, ts_config, created_at, updated_at"
    )
    alias = tenant.home_region.db_alias
    started = time.perf_counter()
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        stage = f"SELECT {columns} FROM knowledge_chunk WITH NO DATA"  # noqa: S608 - constant columns
        cursor.execute(f"CREATE TEMP TABLE bench_chat_stage ON COMMIT DROP AS {stage}")
        with cursor.cursor.copy(f"COPY bench_chat_stage ({columns}) FROM STDIN") as copy:
            noise = rng.normal(0, 0.03, (len(specs), pool.shape[1])).astype(np.float32)
            for j, ((article, loc, topic, product), t) in enumerate(zip(specs, translations, strict=True)):
                vec = pool[index[(loc, topic, product)]] + noise[j]
                vec /= np.linalg.norm(vec)
                copy.write_row(
                    (
                        tenant.id,
                        str(kb.pk),
                        t.pk,
                        article.key,
                        loc,
                        "",
                        "published",
                        uuid.uuid4().hex,
                        0,
                        t.title,
                        "{}",
                        t.body,
                        kb.embedding_model,
                        "[" + ",".join(f"{x:.6f}" for x in vec) + "]",
                        ts_config(loc),
                        "now",
                        "now",
                    )
                )
        tsv = "to_tsvector(ts_config::regconfig, title || ' ' || text)"
        cursor.execute(
            f"INSERT INTO knowledge_chunk ({columns}, tsv) SELECT {columns}, {tsv} FROM bench_chat_stage"  # noqa: S608
        )
    load_s = time.perf_counter() - started
    with connections[alias].cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")
    per_text_ms = embed_s * 1000 / len(pool_texts)
    return {
        "articles_added": n,
        "translations_added": len(translations),
        "distinct_texts_embedded": len(pool_texts),
        "embed_ms_per_text": round(per_text_ms, 2),
        "full_embed_estimate_s": round(per_text_ms * len(translations) / 1000, 1),
        "load_s": round(load_s, 1),
    }


def _prepare() -> dict[str, Any]:
    """Tenant, enlarged demo KB, channel, key and orders; returns what the load phases need."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from apps.chat.models import Action, ApiKeyScope, Channel
    from apps.chat.services.channels import api_key_create, channel_create
    from apps.core.context import tenant_context
    from apps.integrations.models import Connection, SyncedRecord
    from apps.knowledge.demo import DEMO_KB, seed_demo_knowledge
    from apps.knowledge.models import Article, Chunk, KnowledgeBase
    from apps.knowledge.version import knowledge_version_bump
    from apps.tenants.models import Region, Tenant
    from apps.tenants.services import region_sync, tenant_create

    region_sync()
    keep = os.environ.get("BENCH_CHAT_TENANT", "")
    tenant = Tenant.objects.filter(slug=keep).first() if keep else None
    if tenant is None:
        tenant = tenant_create(
            slug=keep or f"bench-chat-{uuid.uuid4().hex[:8]}",
            name="Bench chat",
            home_region=Region.objects.get(code="eu"),
            enabled_locales=LOCALES,
        )
    info: dict[str, Any] = {"tenant": tenant.slug}
    with tenant_context(tenant):
        kb = KnowledgeBase.objects.filter(name=DEMO_KB).first()
        if kb is None or Article.objects.filter(kb=kb).count() != ARTICLES:
            if kb is not None:
                kb.delete()
            started = time.perf_counter()
            seed_demo_knowledge([tenant])
            info["demo_index_s"] = round(time.perf_counter() - started, 1)
            kb = KnowledgeBase.objects.get(name=DEMO_KB)
            info["synthetic"] = _enlarge(tenant, kb, ARTICLES)
        else:
            info["synthetic"] = "reused"
        knowledge_version_bump(tenant_id=tenant.id)  # start with an empty answer cache
        info["articles"] = Article.objects.filter(kb=kb).count()
        info["chunks"] = Chunk.objects.filter(kb=kb).count()
        connection = Connection.objects.filter(name="Bench orders").first()
        if connection is None:
            connection = Connection(
                kind="salesforce",
                name="Bench orders",
                endpoint_region="eu",
                settings={"login_url": "https://127.0.0.1:1", "client_id": "hub"},
            )
            connection.set_secrets({"client_secret": "unused"})
            connection.save()
        from django.utils import timezone

        now = timezone.now()
        SyncedRecord.objects.filter(connection=connection).delete()
        SyncedRecord.objects.bulk_create(
            [
                SyncedRecord(
                    connection=connection,
                    stream="orders",
                    external_id=f"bench-{n}",
                    updated_at=now,
                    number=n,
                    status="Shipped",
                    email=BENCH_CUSTOMER,
                    fields={
                        "number": n,
                        "status": "Shipped",
                        "amount": 10,
                        "currency": "EUR",
                        "email": BENCH_CUSTOMER,
                    },
                    raw={},
                    content_hash=n,
                    synced_at=now,
                    tenant_id=tenant.id,
                )
                for n in ORDERS
            ]
        )
    channel = Channel.objects.filter(tenant=tenant, name="Bench web").first() or channel_create(
        tenant=tenant,
        name="Bench web",
        kind="web",
        default_locale="en",
        allowed_actions=Action.values,
        knowledge_base_id=kb.pk,
    )
    import jwt

    with tenant_context(tenant):
        channel.identity_mode = "jwt"
        channel.identity_secret = secrets.token_urlsafe(32)
        channel.save(update_fields=["identity_mode", "identity_secret", "updated_at"])
    issued = int(time.time())
    _IDENTITY["identity_token"] = jwt.encode(
        {
            "sub": "bench-customer",
            "email": BENCH_CUSTOMER,
            "aud": str(channel.pk),
            "iat": issued,
            "exp": issued + 3600,
        },
        channel.identity_secret,
        algorithm="HS256",
    )
    _key, plaintext = api_key_create(
        channel=channel,
        name=f"bench {uuid.uuid4().hex[:6]}",
        scopes=[ApiKeyScope.CHAT, ApiKeyScope.TRANSCRIPTS],
    )
    return {"tenant": tenant, "channel": channel, "key": plaintext, "info": info}


# --- in-process analysis: queries and timings per turn ----------------------------------------------------
def _turn_texts(locale: str, rng: random.Random, questions: dict[str, list[str]]) -> dict[str, str]:
    # Two topic words, and a made-up six-letter word so that no fresh question repeats (10 topics alone
    # gave only 90 pairs per question: within a phase most "fresh" questions were answer-cache hits).
    nonce = "".join(rng.choices(string.ascii_lowercase, k=6))
    extra = " ".join([*rng.sample(_TOPICS[locale], 2), nonce])
    return {
        "fresh": f"{rng.choice(questions[locale])} {extra}",
        "repeated": questions[locale][0],
        "small_talk": _SMALL_TALK[locale][0],
        "order_status": _ORDER_ASK[locale].format(n=ORDERS[3].lstrip("0")),
    }


def _queries_per_turn(key: str, questions: dict[str, list[str]]) -> dict[str, Any]:
    """One turn of each kind through the Django test client, queries counted per database alias."""
    from contextlib import ExitStack

    from django.conf import settings
    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    def counted(method: str, path: str, body: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        with ExitStack() as stack:
            ctx = {a: stack.enter_context(CaptureQueriesContext(connections[a])) for a in settings.DATABASES}
            if method == "get":
                response = client.get(path, **headers, **extra)
            else:
                response = client.post(path, body, content_type="application/json", **headers, **extra)
        assert response.status_code < 300, response.content
        return {
            "status": response.status_code,
            "per_alias": {a: len(c) for a, c in ctx.items() if len(c)},
            "total": sum(len(c) for c in ctx.values()),
            "sql": {a: [q["sql"][:160] for q in c.captured_queries] for a, c in ctx.items() if len(c)},
            "body": response.json() if method == "post" else None,
        }

    started = counted("post", "/api/v1/conversations", {"locale": "de", **_IDENTITY})
    conversation = started["body"]["id"]
    url = f"/api/v1/conversations/{conversation}/messages"
    texts = _turn_texts("de", random.Random(5), questions)
    result: dict[str, Any] = {"conversation_create": started}
    counted("post", url, {"text": "warm the key cache and touch gate"})
    fresh = f"{texts['fresh']} {uuid.uuid4().hex[:8]}"  # never asked before: an answer-cache miss
    result["knowledge_fresh"] = counted("post", url, {"text": fresh})
    result["knowledge_fresh_with_idempotency_key"] = counted(
        "post", url, {"text": fresh + " x"}, HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex
    )
    result["knowledge_cache_hit"] = counted("post", url, {"text": fresh})
    result["small_talk"] = counted("post", url, {"text": texts["small_talk"]})
    result["order_status"] = counted("post", url, {"text": texts["order_status"]})
    result["transcript"] = counted("get", f"/api/v1/conversations/{conversation}")
    for item in result.values():
        item.pop("body", None)
    return result


def _where_time_goes(tenant: Any, questions: dict[str, list[str]], key: str) -> dict[str, Any]:
    """Mean `Turn.timings` and wall time of `message_post`, called in this process, per kind of turn."""
    from apps.chat.auth import lookup
    from apps.chat.services.conversations import conversation_start, message_post
    from apps.core.context import tenant_context
    from apps.tenants.services import management_token_hash

    principal = lookup(management_token_hash(key)).principal  # type: ignore[union-attr]
    takes_row = "conversation" in inspect.signature(message_post).parameters

    def target(conversation: Any) -> dict[str, Any]:  # the service takes the row (newer) or its id
        return {"conversation": conversation} if takes_row else {"conversation_id": conversation.pk}

    rng = random.Random(9)
    out: dict[str, Any] = {}
    with tenant_context(tenant):
        for kind in ("fresh", "repeated", "small_talk", "order_status"):
            rows: list[dict[str, float]] = []
            for i in range(40):
                locale = LOCALES[i % len(LOCALES)]
                conversation = conversation_start(
                    principal=principal,
                    user_ref="",
                    locale=locale,
                    identity_token=_IDENTITY.get("identity_token", ""),
                )
                text = _turn_texts(locale, rng, questions)[kind]
                started = time.perf_counter()
                turn = message_post(principal=principal, text=text, **target(conversation))
                total = (time.perf_counter() - started) * 1000
                if i >= 5:  # the first ones fill the answer cache and warm the connections
                    rows.append({**turn.timings, "total_ms": total})
            summary = {
                name: round(float(np.mean([r.get(name, 0.0) for r in rows])), 2)
                for name in ("total_ms", "embed_ms", "retrieval_ms")
            }
            summary["other_ms"] = round(
                summary["total_ms"] - summary["embed_ms"] - summary["retrieval_ms"], 2
            )
            summary["cache_hits"] = int(sum(r.get("cache_hit", 0) for r in rows))
            summary["n"] = len(rows)
            out[kind] = summary
    return out


# --- the server -------------------------------------------------------------------------------------------
def _db_url(config: dict[str, Any]) -> str:
    user = urllib.parse.quote(config["USER"], safe="")
    password = urllib.parse.quote(config["PASSWORD"] or "", safe="")
    return f"postgres://{user}:{password}@{config['HOST']}:{config['PORT']}/{config['NAME']}"


def _production_env(metrics_dir: str, *, metrics: bool) -> dict[str, str]:
    """What hub.settings.production requires, pointing at this machine's embedded services."""
    from django.conf import settings

    from apps.security.keys import read_key_file

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "HUB_", "REGION_", "DATABASE_", "REDIS_"))
    }
    signing = os.environ.get("HUB_AUDIT_SIGNING_KEY") or ""
    path = Path(settings.HUB_AUDIT_SIGNING_KEY_FILE)
    if not signing and path.exists():
        signing = path.read_text().strip()
    import base64

    from apps.security.keys import generate_key_file

    user_ref_file = Path(settings.HUB_USER_REF_KEY_FILE)  # the same keys as the dev settings of the set-up
    generate_key_file(user_ref_file)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "hub.settings.production",
            "HUB_HOME": str(settings.HUB_HOME),
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": _db_url(settings.DATABASES["default"]),
            "REDIS_URL": settings.REDIS_URL,
            "HUB_REGIONS": ",".join(settings.HUB_REGIONS),
            "HUB_MASTER_KEYS": settings.HUB_MASTER_KEYS or read_key_file(Path(settings.HUB_MASTER_KEY_FILE)),
            "HUB_AUDIT_SIGNING_KEY": signing or base64.b64encode(secrets.token_bytes(32)).decode(),
            "HUB_METRICS_TOKEN": secrets.token_urlsafe(32),
            "HUB_USER_REF_KEYS": settings.HUB_USER_REF_KEYS or read_key_file(user_ref_file),
            # Production requires an SMTP relay; nothing is sent during a benchmark.
            "EMAIL_URL": "smtp://127.0.0.1:25",
            "DEFAULT_FROM_EMAIL": "bench@example.invalid",
            "HUB_METRICS_ENABLED": "1" if metrics else "0",
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            "HUB_CHAT_RATE_PER_KEY": "1000000/s",
            "HUB_CHAT_RATE_PER_TENANT": "1000000/s",
            "HUB_BENCH_ENDPOINTS": "1",
            "LOG_LEVEL": "WARNING",
            "OPENBLAS_NUM_THREADS": BLAS_THREADS,
            "OMP_NUM_THREADS": BLAS_THREADS,
            # The set-up's embedding model (HUB_EMBEDDING_PROVIDER=...E5Provider measures E5, issue 20).
            "HUB_EMBEDDING_PROVIDER": settings.HUB_EMBEDDING_PROVIDER,
        }
    )
    for code in settings.HUB_REGIONS:
        env[f"REGION_{code.upper()}_DATABASE_URL"] = _db_url(settings.DATABASES[f"region_{code}"])
    return env


class Server:
    """gunicorn with the production settings on 127.0.0.1 (what `manage.py serve` runs, minus access logs)."""

    def __init__(self, *, metrics: bool, workers: int = WORKERS, threads: int = THREADS) -> None:
        from apps.core.embedded import free_port

        self.workers, self.threads = workers, threads
        self.port = free_port()
        self.metrics_dir = tempfile.mkdtemp(prefix="hub-bench-metrics-")
        self.log = tempfile.NamedTemporaryFile(prefix="hub-bench-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
        self.env = _production_env(self.metrics_dir, metrics=metrics)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        bin_dir = Path(sys.executable).parent
        self.proc = subprocess.Popen(
            [
                str(bin_dir / "gunicorn"),
                "hub.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--threads",
                str(self.threads),
                "--config",
                "python:hub.gunicorn",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                status, _body = asyncio.run(_one("127.0.0.1", self.port, "GET", "/healthz"))
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"gunicorn did not come up; see {self.log.name}")
            time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


# --- a small keep-alive HTTP/1.1 client -------------------------------------------------------------------
class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.headers: dict[str, str] = {}  # of the last response, names in lower case

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            # A bytes body goes as is (a platform's webhook signs its exact bytes), anything else as JSON.
            payload = (
                body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
            )
            lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", "X-Forwarded-Proto: https"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            if body is not None:
                lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
            self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
            try:
                return await self._response()
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()  # the server closed an idle keep-alive connection: reconnect once
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        self.headers = headers
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            data = b"".join(p[:-2] for p in parts)
        else:
            data = await self.reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _one(host: str, port: int, method: str, path: str) -> tuple[int, bytes]:
    conn = Conn(host, port)
    try:
        return await asyncio.wait_for(conn.request(method, path), 5)
    finally:
        conn.close()


# --- load phases ------------------------------------------------------------------------------------------
def _summary(samples: list[float], seconds: float) -> dict[str, Any]:
    from bench.common import summarize

    if not samples:
        return {"n": 0}
    return {**summarize(samples), "rps": round(len(samples) / seconds, 1)}


async def _phase(
    port: int,
    key: str,
    kind: str,
    seconds: float,
    questions: dict[str, list[str]],
    *,
    mix: tuple[tuple[str, float], ...] = MIX,
    locales: tuple[str, ...] | list[str] = tuple(LOCALES),
) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {key}"}
    samples: list[float] = []
    by_kind: dict[str, list[float]] = {}
    intents: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    creates: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def client(i: int) -> None:
        conn = Conn("127.0.0.1", port)
        rng = random.Random(i * 7919 + int(time.time()))
        locale = locales[i % len(locales)]
        conversation, turns = "", 0
        try:
            while time.perf_counter() < deadline:
                if not conversation or turns >= TURNS_PER_CONVERSATION:
                    t0 = time.perf_counter()
                    status, data = await conn.request(
                        "POST", "/api/v1/conversations", headers=auth, body={"locale": locale, **_IDENTITY}
                    )
                    creates.append((time.perf_counter() - t0) * 1000)
                    if status == 503:  # refused by the admission gate: wait as Retry-After says
                        statuses[status] += 1
                        await asyncio.sleep(float(conn.headers.get("retry-after", "1")))
                        continue
                    if status != 201:
                        raise RuntimeError(f"conversation create answered {status}: {data[:200]!r}")
                    conversation, turns = json.loads(data)["id"], 0
                if kind == "trivial":
                    method, path, body, headers, what = "GET", "/api/v1/bench/ping", None, auth, "trivial"
                elif kind == "one_select":
                    method, path, body, headers = "GET", f"/api/v1/bench/select/{conversation}", None, auth
                    what = "one_select"
                else:
                    roll, what = rng.random(), mix[-1][0]
                    for name, share in mix:
                        if roll < share:
                            what = name
                            break
                        roll -= share
                    text = _turn_texts(locale, rng, questions)[what]
                    if what == "repeated":
                        text = rng.choice(questions[locale][:4])
                    elif what == "small_talk":
                        text = rng.choice(_SMALL_TALK[locale])
                    elif what == "order_status":
                        text = _ORDER_ASK[locale].format(n=rng.choice(ORDERS).lstrip("0"))
                    method, path, body = (
                        "POST",
                        f"/api/v1/conversations/{conversation}/messages",
                        {"text": text},
                    )
                    headers = {**auth, "Idempotency-Key": uuid.uuid4().hex}
                    turns += 1
                t0 = time.perf_counter()
                status, data = await conn.request(method, path, headers=headers, body=body)
                ms = (time.perf_counter() - t0) * 1000
                statuses[status] += 1
                if status == 503 and "retry-after" in conn.headers:  # refused: counted in statuses
                    await asyncio.sleep(float(conn.headers["retry-after"]))
                    continue
                if status != 200:
                    errors.append(f"{status} {data[:200]!r}")
                    continue
                samples.append(ms)
                by_kind.setdefault(what, []).append(ms)
                if body is not None:
                    intents[json.loads(data)["reply"]["intent"]] += 1
        finally:
            conn.close()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    elapsed = time.perf_counter() - started
    result = _summary(samples, elapsed)
    # The load generator's own CPU (of one core): it shares the machine with the server it measures.
    result["client_cpu_pct"] = round(100 * (time.process_time() - cpu) / elapsed, 1)
    result["statuses"] = dict(statuses)
    if errors:
        result["errors_sample"] = errors[:5]
    if kind == "turns":
        result["by_kind"] = {name: _summary(v, elapsed) for name, v in sorted(by_kind.items())}
        result["intents"] = dict(intents)
        result["conversation_create"] = _summary(creates, elapsed)
    return result


def _cpu_seconds(root_pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of these processes and their children, by pid (gone ones are skipped)."""
    import psutil

    out: dict[int, float] = {}
    for root in root_pids:
        try:
            proc = psutil.Process(root)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                times = p.cpu_times()
                out[p.pid] = times.user + times.system
            except psutil.Error:
                continue
    return out


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def _service_pids() -> list[int]:
    """The embedded PostgreSQL and Redis servers (their CPU is shared with whatever else uses them)."""
    from hub.settings.env import embedded_state

    state = embedded_state() or {}
    return [int(state[name]["pid"]) for name in ("postgres", "redis") if state.get(name, {}).get("pid")]


def _load(
    server: Server, key: str, kind: str, seconds: float, questions: dict[str, list[str]]
) -> dict[str, Any]:
    """One phase, with the CPU the web server (and the database/Redis servers) spent per request."""
    assert server.proc is not None
    web_before, db_before = _cpu_seconds([server.proc.pid]), _cpu_seconds(_service_pids())
    result = asyncio.run(_phase(server.port, key, kind, seconds, questions))
    web = _cpu_used(web_before, _cpu_seconds([server.proc.pid]))
    db = _cpu_used(db_before, _cpu_seconds(_service_pids()))
    n = max(1, result.get("n", 0) + result.get("conversation_create", {}).get("n", 0))
    result["web_cpu_ms_per_request"] = round(1000 * web / n, 2)
    result["db_redis_cpu_ms_per_request"] = round(1000 * db / n, 2)
    return result


async def _first_turns(port: int, key: str, questions: dict[str, list[str]]) -> dict[str, Any]:
    """Right after start: 2 x workers concurrent knowledge turns, each on a new connection.

    Each worker loads the embedding model on its first knowledge turn, so these show what the first users
    after a (re)start wait.
    """
    auth = {"Authorization": f"Bearer {key}"}

    async def one(i: int) -> float:
        conn = Conn("127.0.0.1", port)
        try:
            locale = LOCALES[i % len(LOCALES)]
            status, data = await conn.request(
                "POST", "/api/v1/conversations", headers=auth, body={"locale": locale, **_IDENTITY}
            )
            conversation = json.loads(data)["id"]
            text = questions[locale][i % len(questions[locale])]
            t0 = time.perf_counter()
            status, data = await conn.request(
                "POST", f"/api/v1/conversations/{conversation}/messages", headers=auth, body={"text": text}
            )
            if status != 200:
                raise RuntimeError(f"first turn answered {status}: {data[:200]!r}")
            return (time.perf_counter() - t0) * 1000
        finally:
            conn.close()

    samples = await asyncio.gather(*(one(i) for i in range(2 * WORKERS)))
    return {"n": len(samples), "max_ms": round(max(samples), 1), "min_ms": round(min(samples), 1)}


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    _setup_django()
    result: dict[str, Any] = {
        "clients": CLIENTS,
        "seconds_per_phase": SECONDS,
        "workers": WORKERS,
        "threads": THREADS,
        "blas_threads": BLAS_THREADS,
        "cores": os.cpu_count(),
        "load_average_before": _loadavg(),
    }
    prepared = _prepare()
    tenant, key = prepared["tenant"], prepared["key"]
    result["setup"] = prepared["info"]
    questions = _questions()
    try:
        with Server(metrics=True) as server:
            result["first_turns_after_start"] = asyncio.run(_first_turns(server.port, key, questions))
            _load(server, key, "turns", WARMUP_SECONDS, questions)  # connections, models, caches
            result["trivial"] = _load(server, key, "trivial", SECONDS, questions)
            result["one_select"] = _load(server, key, "one_select", SECONDS, questions)
            result["turns"] = _load(server, key, "turns", SECONDS, questions)
        # Metrics off, then on again: the mean of the two "on" runs brackets the "off" one, so a change in
        # what else runs on the machine does not pass for the cost of metrics.
        with Server(metrics=False) as server:
            _load(server, key, "turns", WARMUP_SECONDS, questions)
            result["turns_metrics_off"] = _load(server, key, "turns", SECONDS, questions)
        with Server(metrics=True) as server:
            _load(server, key, "turns", WARMUP_SECONDS, questions)
            result["turns_metrics_on_again"] = _load(server, key, "turns", SECONDS, questions)
        # The alternative deploy/gunicorn.conf.py offers (GUNICORN_THREADS > 1): threaded workers.
        with Server(metrics=True, workers=2 * (os.cpu_count() or 1), threads=4) as server:
            _load(server, key, "turns", WARMUP_SECONDS, questions)
            result["turns_threaded_workers"] = {
                "workers": server.workers,
                "threads": server.threads,
                **_load(server, key, "turns", SECONDS, questions),
            }
        result["load_average_after"] = _loadavg()
        result["queries_per_turn"] = _queries_per_turn(key, questions)
        result["time_per_turn_in_process"] = _where_time_goes(tenant, questions, key)
    finally:
        _cleanup(tenant)
    trivial_rps = result["trivial"].get("rps") or 1
    turns = result["turns"]
    result["turns_rps_pct_of_trivial"] = round(100 * turns.get("rps", 0) / trivial_rps, 1)
    result["turns_rps_pct_of_one_select"] = round(
        100 * turns.get("rps", 0) / (result["one_select"].get("rps") or 1), 1
    )
    on_rps = (turns.get("rps", 0) + result["turns_metrics_on_again"].get("rps", 0)) / 2
    result["metrics_off_over_on_rps"] = round(result["turns_metrics_off"].get("rps", 0) / (on_rps or 1), 3)
    # CPU per request (web workers + database + Redis) tells what the work costs whatever else the machine
    # runs; the projection is what all cores would serve if nothing else ran (load generator excluded).
    cores = os.cpu_count() or 1
    by_cpu: dict[str, Any] = {}
    for phase in ("trivial", "one_select", "turns", "turns_metrics_off", "turns_metrics_on_again"):
        ms = result[phase].get("web_cpu_ms_per_request", 0) + result[phase].get(
            "db_redis_cpu_ms_per_request", 0
        )
        by_cpu[phase] = {
            "cpu_ms_per_request": round(ms, 2),
            "projected_rps": round(1000 * cores / ms, 1) if ms else None,
        }
    if by_cpu["trivial"]["projected_rps"] and by_cpu["turns"]["projected_rps"]:
        by_cpu["turns_pct_of_trivial"] = round(
            100 * by_cpu["turns"]["projected_rps"] / by_cpu["trivial"]["projected_rps"], 1
        )
    result["by_cpu"] = by_cpu
    result["targets"] = {"turn_p99_ms": 150, "turns_rps_pct_of_trivial": 8}
    result["meets_targets"] = {
        "turn_p99": turns.get("p99_ms", 1e9) <= 150,
        "turns_rps_pct_of_trivial": result["turns_rps_pct_of_trivial"] >= 8,
        "turns_pct_of_trivial_by_cpu": by_cpu.get("turns_pct_of_trivial", 0) >= 8,
    }
    return result


def _cleanup(tenant: Any) -> None:
    """Drop the bench's conversations; without BENCH_CHAT_TENANT also its KB, and deactivate the tenant."""
    from apps.chat.models import Conversation
    from apps.core.context import tenant_context
    from apps.knowledge.models import KnowledgeBase

    with tenant_context(tenant):
        Conversation.objects.all().delete()
        if not os.environ.get("BENCH_CHAT_TENANT"):
            KnowledgeBase.objects.all().delete()
    if not os.environ.get("BENCH_CHAT_TENANT"):
        tenant.is_active = False
        tenant.save(update_fields=["is_active"])


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
