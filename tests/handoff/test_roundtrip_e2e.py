"""The round trip on real processes, per vendor: a real gunicorn and a real Celery worker (queues default +
outbox), the vendor's simulator with its agent helper and signed webhooks.

handoff → ticket (outbox) → agent's public comment (webhook; Dynamics 365 has none: the poll) → the
customer receives it (stored agent message, pushed to the widget stream) → the customer replies → one
comment on the ticket → a private note never reaches the customer → a vendor outage in the middle loses
nothing and delivers in order (the poll recovers what the failed webhook refresh could not read) → the
ticket is resolved → the bot resumes and asks for a rating. A second tenant, whose own simulator hands out
the same ticket ids, never sees any of it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.urls import reverse

from apps.chat.models import Conversation, ConversationStatus, Handoff, HandoffState, Message, Role
from apps.chat.services import widget
from apps.chat.tasks import handoff_poll_task
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.integrations.resilience import redis_client
from apps.integrations.services.webhooks import connection_webhook_org_set, connection_webhook_secret_rotate
from apps.tenants.models import Tenant
from connectors.simulation import Simulator
from tests.channels.platforms import wait_for
from tests.fixtures.chat import IssuedKey, issue_key, web_channel
from tests.fixtures.integrations import demo_connection
from tests.fixtures.processes import Web, Worker
from tests.fixtures.simulators import TINY, StartSimulator

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


# --- per vendor: the simulator, the connection to it, where its webhooks go ---------------------------------
@dataclass
class Vendor:
    kind: str
    simulator: Callable[[], type[Simulator]]
    #: Point the simulator's webhooks at the hub for this connection (the web's URL given).
    hook: Callable[[Simulator, Connection, Tenant, str], None]
    #: The comments the simulator holds on a ticket, as (body, public) — to see the customer's one arrive.
    comments: Callable[[Simulator, str], list[tuple[str, bool]]]
    #: The vendor announces agent activity to the hub; False (Dynamics 365): the handoff poll finds it.
    webhooks: bool = True


def _servicenow_sim() -> type[Simulator]:
    from connectors.servicenow.simulator import ServiceNowSimulator

    return ServiceNowSimulator


def _servicenow_hook(sim: Simulator, connection: Connection, tenant: Tenant, base: str) -> None:
    with tenant_context(tenant):
        secret = connection_webhook_secret_rotate(connection=connection, actor=None)
    path = reverse("integrations:webhook-servicenow", kwargs={"connection_id": connection.pk})
    sim.register_webhook(base + path, secret=secret)  # type: ignore[attr-defined]


def _servicenow_comments(sim: Simulator, ticket: str) -> list[tuple[str, bool]]:
    return [
        (str(r.data["value"]), r.data["element"] == "comments")
        for r in sim.journal(ticket)  # type: ignore[attr-defined]
    ]


def _salesforce_sim() -> type[Simulator]:
    from connectors.salesforce.simulator import SalesforceSimulator

    return SalesforceSimulator


def _salesforce_hook(sim: Simulator, connection: Connection, tenant: Tenant, base: str) -> None:
    """Outbound Messages: the URL carries the shared secret, the message the org id the hub checks."""
    from connectors.salesforce.simulator import ORG_ID

    with tenant_context(tenant):
        token = connection_webhook_secret_rotate(connection=connection, actor=None)
        connection_webhook_org_set(connection=connection, org_id=ORG_ID, actor=None)
    path = reverse("integrations:webhook-salesforce", kwargs={"connection_id": connection.pk, "token": token})
    sim.register_webhook(base + path)  # type: ignore[attr-defined]


def _salesforce_comments(sim: Simulator, ticket: str) -> list[tuple[str, bool]]:
    return [
        (str(r.data["CommentBody"]), bool(r.data["IsPublished"]))
        for r in sim.case_comments(ticket)  # type: ignore[attr-defined]
    ]


def _hubspot_sim() -> type[Simulator]:
    from connectors.hubspot.simulator import HubSpotSimulator

    return HubSpotSimulator


def _hubspot_hook(sim: Simulator, connection: Connection, tenant: Tenant, base: str) -> None:
    """Webhook v3 is signed with the app's client secret (HubSpot's, stored with the credentials)."""
    with tenant_context(tenant):
        connection.set_secrets({**connection.secrets, "client_secret": sim.client_secret})  # type: ignore[attr-defined]
        connection.save(update_fields=["credentials", "updated_at"])
    path = reverse("integrations:webhook-hubspot", kwargs={"connection_id": connection.pk})
    sim.register_webhook(base + path)  # type: ignore[attr-defined]


def _hubspot_comments(sim: Simulator, ticket: str) -> list[tuple[str, bool]]:
    emails = sim.engagements(ticket, "emails")  # type: ignore[attr-defined]
    notes = sim.engagements(ticket, "notes")  # type: ignore[attr-defined]
    return [(str(r.data.get("hs_email_text") or ""), True) for r in emails] + [
        (str(r.data.get("hs_note_body") or ""), False) for r in notes
    ]


def _dynamics_sim() -> type[Simulator]:
    from connectors.dynamics.simulator import DynamicsSimulator

    return DynamicsSimulator


def _dynamics_comments(sim: Simulator, ticket: str) -> list[tuple[str, bool]]:
    """Case notes; `*WEB*` notes are the ones the customer sees."""
    notes = sim.notes(ticket)  # type: ignore[attr-defined]
    return [(str(r.data["notetext"]), str(r.data["notetext"]).startswith("*WEB*")) for r in notes]


VENDORS = {
    "dynamics365": Vendor("dynamics365", _dynamics_sim, lambda *_: None, _dynamics_comments, webhooks=False),
    "servicenow": Vendor("servicenow", _servicenow_sim, _servicenow_hook, _servicenow_comments),
    "salesforce": Vendor("salesforce", _salesforce_sim, _salesforce_hook, _salesforce_comments),
    "hubspot": Vendor("hubspot", _hubspot_sim, _hubspot_hook, _hubspot_comments),
}


# --- the customer's side ------------------------------------------------------------------------------------
class Pushes:
    """What the widget's push stream of one conversation receives (Redis pub/sub, as the stream reads it)."""

    def __init__(self, conversation_id: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(widget._channel_name(conversation_id))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message and message.get("type") == "message":
                self.events.append(json.loads(message["data"]))

    def texts(self, role: str) -> list[str]:
        return [e["text"] for e in self.events if e.get("role") == role]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()


@dataclass
class Customer:
    web: Web
    key: IssuedKey
    tenant: Tenant
    conversation_id: str = ""

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = requests.post(
            f"{self.web.url}/api/v1/conversations{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.key.plaintext}"},
            timeout=30,
        )
        assert response.status_code in (200, 201), response.text
        return response.json()

    def start(self) -> None:
        self.conversation_id = self._post("", {"locale": "de"})["id"]

    def hand_off(self) -> dict[str, Any]:
        return dict(self._post(f"/{self.conversation_id}/handoff", {}))

    def say(self, text: str) -> dict[str, Any]:
        return dict(self._post(f"/{self.conversation_id}/messages", {"text": text}))

    def poll(self, role: str) -> list[tuple[str, str]]:
        """The chat API's `GET …/messages?after=0` (a client without push): (author, text) of `role`."""
        response = requests.get(
            f"{self.web.url}/api/v1/conversations/{self.conversation_id}/messages",
            params={"after": 0, "limit": 100},
            headers={"Authorization": f"Bearer {self.key.plaintext}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return [(m.get("author", ""), m["text"]) for m in response.json()["messages"] if m["role"] == role]

    def handoff(self) -> Handoff:
        with tenant_context(self.tenant):
            return Handoff.objects.get(conversation_id=self.conversation_id)

    def messages(self, role: str) -> list[str]:
        with tenant_context(self.tenant):
            return list(
                Message.objects.filter(conversation_id=self.conversation_id, role=role)
                .order_by("id")
                .values_list("text", flat=True)
            )

    def status(self) -> str:
        with tenant_context(self.tenant):
            return str(Conversation.objects.get(pk=self.conversation_id).status)


@pytest.fixture
def processes(tmp_path: Path, simulator: StartSimulator) -> Iterator[tuple[Web, Worker]]:
    from connectors.salesforce.simulator import SalesforceSimulator

    # The run's CA (every https simulator of the run is signed by it), trusted by both processes.
    ca = simulator(SalesforceSimulator, counts=TINY).ca_bundle or ""
    web = Web(tmp_path / "web.log", ca_bundle=ca, sync_workers=2)
    worker = Worker(tmp_path / "worker.log", ca, queues="default,outbox", name="handoff")
    web.start()
    worker.start()
    try:
        web.wait_ready(time.monotonic() + 60)
        yield web, worker
    finally:
        worker.stop()
        web.stop()


def _poll_now(tenant: Tenant) -> None:
    """What beat does every HUB_HANDOFF_POLL_SECONDS, without waiting for it: the due handoffs refreshed."""
    with tenant_context(tenant):
        Handoff.objects.filter(state__in=["requested", "open"]).update(next_poll_at="2000-01-01T00:00:00Z")
    handoff_poll_task()


def _arrives(vendor: Vendor, tenant: Tenant, check: Callable[[], bool], *, seconds: float, what: str) -> None:
    """Wait for agent activity to reach the hub: by the vendor's webhook, or by polls (no webhook)."""
    if vendor.webhooks:
        wait_for(check, seconds=seconds, what=what)
        return
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        _poll_now(tenant)
        time.sleep(0.5)


@pytest.mark.parametrize("kind", sorted(VENDORS))
def test_the_round_trip(
    kind: str,
    tenant_a: Tenant,
    tenant_b: Tenant,
    simulator: StartSimulator,
    processes: tuple[Web, Worker],
) -> None:
    vendor = VENDORS[kind]
    web, worker = processes
    see = f"see {worker.log} and {web.log}"
    sims, customers = {}, {}
    for tenant in (tenant_a, tenant_b):
        sim = simulator(vendor.simulator(), counts=TINY)  # same seed: the same ticket ids in both
        connection = demo_connection(tenant, kind, sim.describe(), name=f"{kind} {tenant.slug}")
        vendor.hook(sim, connection, tenant, web.url)
        customer = Customer(web, issue_key(web_channel(tenant)), tenant)
        customer.start()
        sims[tenant.pk], customers[tenant.pk] = sim, customer
    sim, customer, other = sims[tenant_a.pk], customers[tenant_a.pk], customers[tenant_b.pk]
    pushes = Pushes(customer.conversation_id)
    try:
        # Handoff → ticket: the worker delivers it, the handoff learns its vendor id.
        for each in (customer, other):
            assert each.hand_off()["reply"]["handoff"] is True
        for each in (customer, other):
            opened = lambda each=each: each.handoff().state == HandoffState.OPEN  # noqa: E731
            wait_for(opened, seconds=60, what=f"ticket; {see}")
        ticket = customer.handoff().ticket_vendor_id
        assert ticket and ticket == other.handoff().ticket_vendor_id  # the same id in both tenants' vendors

        # Agent → customer, by webhook; a private note never.
        sim.agent(ticket=ticket, body="Interne Notiz: Kunde prüfen", public=False)  # type: ignore[attr-defined]
        sim.agent(ticket=ticket, body="Guten Tag, hier ist Beth.", author="Beth")  # type: ignore[attr-defined]
        _arrives(vendor, tenant_a, lambda: customer.messages(Role.AGENT) == ["Guten Tag, hier ist Beth."],
                 seconds=30, what=f"agent message; {see}")  # fmt: skip
        wait_for(lambda: pushes.texts(Role.AGENT) == ["Guten Tag, hier ist Beth."], seconds=10, what="push")
        assert [text for _author, text in customer.poll(Role.AGENT)] == ["Guten Tag, hier ist Beth."]

        # Customer → agent: the bot is quiet, the ticket gets the comment once.
        turn = customer.say("Danke, mein Paket fehlt seit Montag.")
        assert turn["reply"]["text"] is None and turn["reply"]["handoff"] is True
        wait_for(
            lambda: any("Paket fehlt seit Montag" in body for body, _ in vendor.comments(sim, ticket)),
            seconds=30,
            what=f"customer comment on the ticket; {see}",
        )
        time.sleep(1)  # a redelivery would show up by now
        hub_comments = [b for b, public in vendor.comments(sim, ticket) if "Paket fehlt seit Montag" in b]
        assert len(hub_comments) == 1
        _poll_now(tenant_a)  # a poll reads the hub's own comment back: it must not echo to the customer
        time.sleep(2)
        assert customer.messages(Role.AGENT) == ["Guten Tag, hier ist Beth."]

        # A vendor outage in the middle: the webhook's refresh fails, the comments wait at the vendor; once
        # the vendor is back the poll brings them, in order, once.
        sim.inject(outage="503")
        sim.agent(ticket=ticket, body="Zweitens: wir prüfen das.")  # type: ignore[attr-defined]
        sim.agent(ticket=ticket, body="Drittens: Ersatz ist unterwegs.")  # type: ignore[attr-defined]
        time.sleep(2)
        assert customer.messages(Role.AGENT) == ["Guten Tag, hier ist Beth."]
        sim.clear_faults()
        time.sleep(1.5)  # the breaker's cool-down in the worker (HUB_BREAKER_COOLDOWN_SECONDS=1)
        want = ["Guten Tag, hier ist Beth.", "Zweitens: wir prüfen das.", "Drittens: Ersatz ist unterwegs."]
        deadline = time.monotonic() + 45
        while customer.messages(Role.AGENT) != want and time.monotonic() < deadline:
            _poll_now(tenant_a)
            time.sleep(1)
        assert customer.messages(Role.AGENT) == want, see
        assert [text for _author, text in customer.poll(Role.AGENT)] == want

        # Resolved: the bot resumes in German and asks for a rating.
        sim.agent(ticket=ticket, state="resolved")  # type: ignore[attr-defined]
        _arrives(vendor, tenant_a, lambda: customer.status() == ConversationStatus.OPEN, seconds=30,
                 what=f"resume; {see}")  # fmt: skip
        bot = customer.messages(Role.ASSISTANT)
        assert bot[-2].startswith("Unser Mitarbeiter hat Ihr Anliegen abgeschlossen")
        assert bot[-1].startswith("Wie zufrieden sind Sie")
        # HubSpot's default pipeline has one closed stage: "resolved" lands there.
        assert customer.handoff().resolution in ("resolved", "closed")
        assert customer.say("5")["reply"]["text"] == "Vielen Dank für Ihre Bewertung!"
        assert all("Interne Notiz" not in text for text in pushes.texts(Role.AGENT))

        # The other tenant: same ticket id, own vendor; nothing crossed.
        assert other.messages(Role.AGENT) == []
        assert other.handoff().state == HandoffState.OPEN and other.status() == ConversationStatus.HANDOFF
    finally:
        pushes.close()
