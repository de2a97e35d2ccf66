"""Locust load test of the chat API, for bigger runs against a deployed hub than `bench/bench_chat.py`.

Locust is not a dependency of the hub; install it where the load is generated:

    pip install locust
    HUB_URL=https://hub.example.com HUB_API_KEY=hub_xxx_yyy \\
        locust -f bench/locustfile.py --headless -u 200 -r 20 -t 5m

`HUB_API_KEY` is a channel API key with the `chat` scope, and `transcripts` if the users should also read
their transcripts (console: Channels & API keys). Raise the key's and the tenant's rate limits on the hub
for the test (HUB_CHAT_RATE_PER_KEY, HUB_CHAT_RATE_PER_TENANT), or give each Locust process its own key,
or the run measures 429s. Each simulated channel user starts a
conversation in a locale, then sends turns — knowledge questions (some repeated, which the answer cache
serves), small talk and an order-status question — and sometimes leaves feedback. Optional:
HUB_LOCALES (comma-separated, default en,de,fr,es,ja), HUB_ORDER_NUMBERS (comma-separated numbers of
synced orders; without them the order-status question is answered "not found", which is still a turn).
"""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

from locust import HttpUser, between, task

QUESTIONS = {
    "en": ["How many days do I have to return something?", "How long does standard delivery take?",
           "Is shipping free?", "I forgot my password", "My card was declined at checkout"],
    "de": ["Wie lange habe ich Zeit, einen Artikel zurückzugeben?", "Wie lange dauert der Standardversand?",
           "Ist der Versand kostenlos?", "Ich habe mein Passwort vergessen"],
    "fr": ["Combien de jours ai-je pour retourner un article ?", "Combien de temps prend la livraison ?",
           "La livraison est-elle gratuite ?", "J'ai oublié mon mot de passe"],
    "es": ["¿Cuántos días tengo para devolver algo?", "¿Cuánto tarda el envío estándar?",
           "¿El envío es gratis?", "Olvidé mi contraseña"],
    "ja": ["返品は何日以内にできますか?", "通常配送はどのくらいかかりますか?", "送料は無料ですか?",
           "パスワードを忘れました"],
}  # fmt: skip
SMALL_TALK = {"en": "Hello", "de": "Hallo", "fr": "Bonjour", "es": "Hola", "ja": "こんにちは"}
ORDER_ASK = {
    "en": "Where is my order {n}?",
    "de": "Wo ist meine Bestellung {n}?",
    "fr": "Où en est ma commande {n} ?",
    "es": "¿Dónde está mi pedido {n}?",
    "ja": "注文 {n} はどこですか?",
}
EXTRA_WORDS = ["today", "please", "again", "quickly", "exactly", "still", "now", "online", "in store"]
TURNS_PER_CONVERSATION = 8


class ChannelUser(HttpUser):
    """One end user of a chat channel, talking through the channel's API key."""

    host = os.environ.get("HUB_URL", "http://127.0.0.1:8000")
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        key = os.environ.get("HUB_API_KEY", "")
        if not key:
            raise RuntimeError("Set HUB_API_KEY to a channel API key with the chat scope")
        self.client.headers["Authorization"] = f"Bearer {key}"
        locales = [x.strip() for x in os.environ.get("HUB_LOCALES", "en,de,fr,es,ja").split(",") if x.strip()]
        self.locale = random.choice([loc for loc in locales if loc in QUESTIONS] or ["en"])
        self.orders = [x.strip() for x in os.environ.get("HUB_ORDER_NUMBERS", "1001").split(",") if x.strip()]
        self.conversation = ""
        self.turns = 0
        self.last_reply: int | None = None
        self.reads_transcripts = True
        self.start_conversation()

    def start_conversation(self) -> None:
        body = {
            "locale": self.locale,
            "user_ref": f"locust-{uuid.uuid4().hex[:12]}",
            "metadata": {"load": True},
        }
        with self.client.post(
            "/api/v1/conversations", json=body, name="conversation", catch_response=True
        ) as r:
            if r.status_code != 201:
                r.failure(f"start answered {r.status_code}")
                return
            self.conversation = r.json()["id"]
            self.turns = 0

    def say(self, text: str, name: str) -> None:
        if not self.conversation or self.turns >= TURNS_PER_CONVERSATION:
            self.start_conversation()
            if not self.conversation:
                return
        url = f"/api/v1/conversations/{self.conversation}/messages"
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(url, json={"text": text}, headers=headers, name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"turn answered {r.status_code}")
                return
            data: dict[str, Any] = r.json()
            self.last_reply = data["message_id"]
            self.turns += 1

    @task(4)
    def knowledge_question(self) -> None:
        question = random.choice(QUESTIONS[self.locale])
        self.say(f"{question} {random.choice(EXTRA_WORDS)}", "turn: knowledge")

    @task(3)
    def repeated_question(self) -> None:
        self.say(QUESTIONS[self.locale][0], "turn: repeated (answer cache)")

    @task(1)
    def small_talk(self) -> None:
        self.say(SMALL_TALK[self.locale], "turn: small talk")

    @task(1)
    def order_status(self) -> None:
        self.say(ORDER_ASK[self.locale].format(n=random.choice(self.orders)), "turn: order status")

    @task(1)
    def feedback(self) -> None:
        if not self.conversation:
            return
        body = {"rating": random.randint(1, 5), "comment": "", "message_id": self.last_reply}
        self.client.post(f"/api/v1/conversations/{self.conversation}/feedback", json=body, name="feedback")

    @task(1)
    def transcript(self) -> None:
        if not self.conversation or not self.reads_transcripts:
            return
        url = f"/api/v1/conversations/{self.conversation}"
        with self.client.get(url, name="transcript", catch_response=True) as r:
            if r.status_code == 403:  # a key without the transcripts scope: stop asking, not a failure
                self.reads_transcripts = False
                r.success()
