"""Intent routing: fast multilingual rules first, then similarity to intent examples in embedding space.

Only the user's own words route a turn; retrieved article text never reaches this module, so an instruction
hidden in an article cannot trigger an action. Action intents also need validated parameters (an order
number, an e-mail address), extracted here with strict patterns.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.knowledge.embeddings import calibration
from apps.security import pii

KNOWLEDGE = "knowledge"
ORDER_STATUS = "order_status"
CREATE_TICKET = "create_ticket"
CAPTURE_LEAD = "capture_lead"
HANDOFF = "handoff"
SMALL_TALK = "small_talk"
UNKNOWN = "unknown"

ACTION_INTENTS = (ORDER_STATUS, CREATE_TICKET, CAPTURE_LEAD, HANDOFF)
# Actions that write to the outbox (order status only reads synced records).
OUTBOX_INTENTS = (CREATE_TICKET, CAPTURE_LEAD, HANDOFF)
# What a provider-backed classifier may name, with a one-line meaning each (the prompt lists them). Fixed,
# not per channel: the channel's allowed actions still decide what runs.
CLASSIFIER_INTENTS = {
    KNOWLEDGE: "a question the help articles may answer (the default)",
    ORDER_STATUS: "asks where an order is or what its status is",
    CREATE_TICKET: "reports a problem or asks for a support case",
    CAPTURE_LEAD: "wants sales to get in touch, a quote or a demo",
    HANDOFF: "wants to talk to a human",
    SMALL_TALK: "a greeting or thanks with no request",
}


@dataclass(frozen=True)
class Routed:
    intent: str
    params: dict[str, str] = field(default_factory=dict)
    confidence: float = 1.0
    via: str = "rule"


def _words(*items: str) -> re.Pattern[str]:
    """One case-insensitive pattern; Latin words match whole, CJK phrases anywhere."""
    parts = []
    for item in items:
        escaped = re.escape(item)
        parts.append(escaped if not item.isascii() else rf"\b{escaped}\b")
    return re.compile("|".join(parts), re.IGNORECASE)


_HANDOFF = _words(
    "human", "real person", "an agent", "a person", "representative", "talk to someone",
    "speak to someone", "live agent", "operator", "mitarbeiter", "mensch", "echten person",
    "berater", "humain", "conseiller", "une personne", "un agent", "agente", "una persona",
    "un humano", "オペレーター", "担当者", "人間", "有人",
)  # fmt: skip
_ORDER = _words(
    "order", "orders", "bestellung", "auftrag", "commande", "pedido", "orden", "注文", "オーダー",
)  # fmt: skip
_WHERE_IS = _words(
    "where", "status", "track", "tracking", "arrive", "shipped", "delivered", "wo ist", "wo bleibt",
    "stand", "sendungsverfolgung", "où en est", "suivi", "statut", "dónde está", "estado",
    "seguimiento", "どこ", "状況", "配送状況", "届",
)  # fmt: skip
_TICKET = _words(
    "ticket", "open a case", "support case", "report a problem", "report an issue",
    "file a complaint", "störung melden", "fall eröffnen", "problem melden", "créer un ticket",
    "signaler un problème", "ouvrir un ticket", "abrir un ticket", "crear un ticket",
    "reportar un problema", "チケット", "問い合わせを作成", "不具合を報告",
)  # fmt: skip
_LEAD = _words(
    "contact me", "call me back", "get in touch", "a quote", "pricing for", "talk to sales",
    "sales team", "book a demo", "request a demo", "angebot", "rückruf", "kontaktieren sie mich",
    "vertrieb", "devis", "contactez-moi", "rappelez-moi", "presupuesto", "contáctenme", "llámenme",
    "見積", "営業", "連絡してください",
)  # fmt: skip
_SMALL_TALK = _words(
    "hi", "hello", "hey", "thanks", "thank you", "good morning", "bye", "hallo", "danke",
    "guten tag", "tschüss", "bonjour", "merci", "salut", "au revoir", "hola", "gracias",
    "buenos días", "adiós", "こんにちは", "ありがとう", "おはよう", "さようなら",
)  # fmt: skip

# Order numbers as the vendors print them: REQ0010001, SO-12345, #12345, 00000100, 0000012345.
# An optional random suffix: Dataverse's default order numbers are ORD-01001-X9K2B7 (issue 23).
_ORDER_NUMBER = re.compile(
    r"(?<![\w-])#?((?:[A-Z]{2,5}-?)?\d{3,12}(?:-[A-Z0-9]{4,8})?)(?![\w-])", re.IGNORECASE
)
_SMALL_TALK_MAX_WORDS = 5

# Paraphrases the rules miss land here; one short example per intent and language is enough for USE.
_EXAMPLES: dict[str, tuple[str, ...]] = {
    HANDOFF: (
        "I want to talk to a human being",
        "Ich möchte mit einem Menschen sprechen",
        "Je veux parler à quelqu'un",
        "Quiero hablar con alguien",
        "誰かと話したい",
    ),
    CREATE_TICKET: (
        "Something is broken, please open a support request",
        "Bitte erstellen Sie eine Supportanfrage, etwas funktioniert nicht",
        "Merci d'ouvrir une demande d'assistance, quelque chose ne marche pas",
        "Por favor abran una solicitud de soporte, algo no funciona",
        "サポートの依頼を作成してください",
    ),
    CAPTURE_LEAD: (
        "I am interested in buying your product, please have sales reach out",
        "Ich interessiere mich für Ihr Produkt, bitte melden Sie sich",
        "Je suis intéressé par votre produit, recontactez-moi",
        "Estoy interesado en su producto, pónganse en contacto",
        "製品の購入を検討しています。連絡をください",
    ),
}
# Questions no help center answers (weather, politics, health, investing, recipes, sport, travel, homework,
# local tips, films, the assistant itself), in the languages of the intent examples: a question closer to
# these than to the knowledge base's best article gets the fallback instead of the least unrelated article
# (off_topic_similarity; the chat's knowledge step). Written as generic categories, not from a tenant's data.
OFF_TOPIC_EXAMPLES: tuple[str, ...] = (
    "Will it rain tomorrow?",
    "Wird es morgen regnen?",
    "Va-t-il pleuvoir demain ?",
    "¿Va a llover mañana?",
    "明日は雨が降りますか?",
    "What do you think about the government and the elections?",
    "Was hältst du von der Regierung und den Wahlen?",
    "Que penses-tu du gouvernement et des élections ?",
    "¿Qué opinas del gobierno y de las elecciones?",
    "政府や選挙についてどう思いますか?",
    "Tell me something funny",
    "Erzähl mir etwas Lustiges",
    "Raconte-moi quelque chose de drôle",
    "Cuéntame algo gracioso",
    "何か面白い話をして",
    "I feel sick, which medicine should I take?",
    "Mir ist schlecht, welches Medikament soll ich nehmen?",
    "Je suis malade, quel médicament dois-je prendre ?",
    "Me encuentro mal, ¿qué medicamento debo tomar?",
    "体調が悪いのですが、どの薬を飲めばいいですか?",
    "Should I invest my savings in shares or crypto?",
    "Soll ich mein Erspartes in Aktien oder Krypto anlegen?",
    "Dois-je investir mes économies en actions ou en crypto ?",
    "¿Debería invertir mis ahorros en acciones o criptomonedas?",
    "貯金を株や仮想通貨に投資すべきですか?",
    "Give me a recipe for dinner tonight",
    "Gib mir ein Rezept für das Abendessen",
    "Donne-moi une recette pour le dîner",
    "Dame una receta para la cena",
    "今夜の夕食のレシピを教えて",
    "Who won the football match last night?",
    "Wer hat gestern das Fußballspiel gewonnen?",
    "Qui a gagné le match de foot hier soir ?",
    "¿Quién ganó el partido de fútbol anoche?",
    "昨日のサッカーの試合はどっちが勝ちましたか?",
    "Book me a flight and a hotel in Rome",
    "Buch mir einen Flug und ein Hotel in Rom",
    "Réserve-moi un vol et un hôtel à Rome",
    "Resérvame un vuelo y un hotel en Roma",
    "ローマ行きの飛行機とホテルを予約して",
    "Can you solve this maths problem for my homework?",
    "Kannst du meine Matheaufgabe lösen?",
    "Peux-tu résoudre mon exercice de maths ?",
    "¿Puedes resolver mi problema de matemáticas?",
    "数学の宿題を解いてくれますか?",
    "Can you recommend a good restaurant near me?",
    "Kannst du mir ein gutes Restaurant in der Nähe empfehlen?",
    "Peux-tu me conseiller un bon restaurant près de chez moi ?",
    "¿Me recomiendas un buen restaurante cerca?",
    "近くのおいしいレストランを教えて",
    "What is a good film to watch tonight?",
    "Welchen Film soll ich heute Abend schauen?",
    "Quel film regarder ce soir ?",
    "¿Qué película puedo ver esta noche?",
    "今夜見るのにおすすめの映画は?",
    "Are you a robot? Do you have feelings?",
    "Bist du ein Roboter? Hast du Gefühle?",
    "Es-tu un robot ? As-tu des sentiments ?",
    "¿Eres un robot? ¿Tienes sentimientos?",
    "あなたはロボットですか?感情はありますか?",
)
_EXAMPLE_THRESHOLD = 0.62  # cosine; measured on tests/chat/intents.jsonl, below it questions were misrouted
_EXAMPLE_MARGIN = 0.06  # over the runner-up intent


class _ExampleIndex:
    """Intent example vectors, computed once per process from the embedding model (immutable data).

    The examples are questions, compared with questions: embedded as such (E5's "query: " prefix)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vectors: dict[str, tuple[str, np.ndarray]] = {}

    def matrix(self, provider: Any) -> tuple[list[str], np.ndarray]:
        model_id = provider.model_id
        cached = self._vectors.get(model_id)
        if cached is None:
            with self._lock:
                labels = [intent for intent, texts in _EXAMPLES.items() for _ in texts]
                texts = [text for items in _EXAMPLES.values() for text in items]
                cached = ("\0".join(labels), provider.embed_questions(texts))
                self._vectors[model_id] = cached
        return cached[0].split("\0"), cached[1]

    def off_topic(self, provider: Any) -> np.ndarray:
        key = "off-topic:" + provider.model_id
        cached = self._vectors.get(key)
        if cached is None:
            with self._lock:
                cached = ("", provider.embed_questions(list(OFF_TOPIC_EXAMPLES)))
                self._vectors[key] = cached
        return cached[1]


_examples = _ExampleIndex()


def warm(provider: Any) -> None:
    """Embed the intent and off-topic examples now (a web worker's start), not on some customer's turn."""
    _examples.matrix(provider)
    _examples.off_topic(provider)


def off_topic_similarity(vector: np.ndarray, *, provider: Any) -> float:
    """The question's cosine similarity to the closest off-topic example (OFF_TOPIC_EXAMPLES)."""
    return float(np.max(_examples.off_topic(provider) @ vector))


def normalize_question(text: str) -> str:
    """Case-, width- and whitespace-folded text, for the answer cache key."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[\s\u3000]+", " ", text)
    return text.strip(" ?!.。")  # NFKC folded the full-width marks already


def extract_order_number(text: str) -> str | None:
    for match in _ORDER_NUMBER.finditer(text):
        value = match.group(1).upper()
        if any(ch.isdigit() for ch in value):
            return value
    return None


def extract_email(text: str) -> str | None:
    for match in pii.detect(text):
        if match.kind == pii.PiiKind.EMAIL:
            return text[match.start : match.end]
    return None


def route(text: str, *, vector: np.ndarray | None = None, provider: Any = None) -> Routed:
    """Route one user message. `vector` (the query embedding, when already computed) enables the
    example-similarity step; without it only the rules run."""
    if _HANDOFF.search(text):
        return Routed(HANDOFF)
    if _ORDER.search(text):
        # "How do I cancel an order?" is a question; "where is order 123" and "track my order" are lookups.
        if number := extract_order_number(text):
            return Routed(ORDER_STATUS, {"number": number})
        if _WHERE_IS.search(text):
            return Routed(ORDER_STATUS)
    if _TICKET.search(text):
        return Routed(CREATE_TICKET)
    if _LEAD.search(text):
        email = extract_email(text)
        return Routed(CAPTURE_LEAD, {"email": email} if email else {})
    if len(text.split()) <= _SMALL_TALK_MAX_WORDS and _SMALL_TALK.search(text) and "?" not in text:
        return Routed(SMALL_TALK)
    if vector is not None and provider is not None:
        labels, matrix = _examples.matrix(provider)
        scores = matrix @ vector
        best: dict[str, float] = {}
        for label, score in zip(labels, scores.tolist(), strict=True):
            best[label] = max(best.get(label, -1.0), score)
        ranked = sorted(best.items(), key=lambda kv: kv[1], reverse=True)
        (top, top_score), runner_up = ranked[0], ranked[1][1] if len(ranked) > 1 else -1.0
        # The constants were measured with USE; another model's cosines need its own (embeddings.calibration).
        calibrated = calibration(provider.model_id)
        threshold = (
            calibrated.intent_threshold if calibrated.intent_threshold is not None else _EXAMPLE_THRESHOLD
        )
        margin = calibrated.intent_margin if calibrated.intent_margin is not None else _EXAMPLE_MARGIN
        if top_score >= threshold and top_score - runner_up >= margin:
            params: dict[str, str] = {}
            if top == CAPTURE_LEAD and (email := extract_email(text)):
                params["email"] = email
            return Routed(top, params, confidence=round(top_score, 3), via="examples")
    return Routed(KNOWLEDGE, confidence=0.0, via="default")


def classified(text: str, *, intent: str) -> Routed:
    """Route `text` to the intent a language model named; parameters only from the user's own words."""
    if intent not in CLASSIFIER_INTENTS:
        return Routed(KNOWLEDGE, confidence=0.0, via="default")
    params: dict[str, str] = {}
    if intent == ORDER_STATUS and (number := extract_order_number(text)):
        params["number"] = number
    elif intent == CAPTURE_LEAD and (email := extract_email(text)):
        params["email"] = email
    return Routed(intent, params, confidence=0.0, via="provider")
