"""A delivery status that arrives before the outbox recorded the platform's id of the message (the platform
answered the send and reported on it before the relay's commit) is kept and applied once the id is known."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from apps.chat.services import channel_inbound
from apps.chat.services.channel_inbound import STATUS_RETRY_DELAYS
from apps.chat.tasks import channel_status_task
from apps.core.context import tenant_context
from apps.integrations.models import OutboxMessage
from apps.observability import metrics
from connectors.twilio.simulator import twilio_signature
from connectors.whatsapp.simulator import meta_json
from tests.channels.platforms import Signed, Wired, message, post, process_all, relay, wire

pytestmark = pytest.mark.django_db


class Published:
    """The status task's publications, captured instead of sent to the broker."""

    def __init__(self, monkeypatch: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        monkeypatch.setattr(channel_status_task, "apply_async", self.apply_async)

    def apply_async(self, *, kwargs: dict[str, Any], countdown: float) -> None:
        self.calls.append({"kwargs": kwargs, "countdown": countdown})

    def run_last(self) -> str:
        """Run the last published try, as the worker would once its countdown passed."""
        return str(channel_status_task.apply(kwargs=self.calls[-1]["kwargs"]).get())


def _sent_but_not_yet_recorded(w: Wired) -> tuple[OutboxMessage, str]:
    """A reply the platform accepted, whose id the outbox has not committed yet (the race's window)."""
    post(Client(), w, message(w, "Hallo"))
    process_all(w)
    relay(w)
    with tenant_context(w.tenant):
        sent = OutboxMessage.objects.get(connection=w.connection)
        vendor_id = sent.vendor_id
        OutboxMessage.objects.filter(pk=sent.pk).update(vendor_id="")
    assert vendor_id
    return sent, vendor_id


def _whatsapp_status(w: Wired, vendor_id: str, value: str) -> None:
    payload = w.sim.envelope({"statuses": [{"id": vendor_id, "status": value, "timestamp": "1",
                                             "recipient_id": "4915112345678"}]})  # fmt: skip
    body = meta_json(payload)
    assert post(Client(), w, Signed(body, w.sim.sign(body), "application/json", "")).status_code == 200


def _unmatched() -> float:
    counter = metrics.CHANNEL_MESSAGES.labels(kind="whatsapp", direction="out", outcome="status_unmatched")
    return float(counter._value.get())


def _delivery(w: Wired, sent: OutboxMessage) -> Any:
    with tenant_context(w.tenant):
        return (OutboxMessage.objects.get(pk=sent.pk).payload or {}).get("delivery")


def _record_vendor_id(w: Wired, sent: OutboxMessage, vendor_id: str) -> None:
    with tenant_context(w.tenant):
        OutboxMessage.objects.filter(pk=sent.pk).update(vendor_id=vendor_id)


def test_a_whatsapp_status_before_the_outbox_commit_is_applied_once_the_id_is_known(
    tenant_a: Any, sims: dict[str, Any], monkeypatch: Any
) -> None:
    published = Published(monkeypatch)
    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    sent, vendor_id = _sent_but_not_yet_recorded(w)
    _whatsapp_status(w, vendor_id, "delivered")
    assert _delivery(w, sent) is None
    [call] = published.calls
    assert call["countdown"] == STATUS_RETRY_DELAYS[0]
    assert call["kwargs"] == {
        "tenant_id": tenant_a.id,
        "connection_id": str(w.connection.pk),
        "platform_message_id": vendor_id,
        "status": "delivered",
        "error": "",
        "attempt": 1,
    }
    assert published.run_last() == "unknown"  # still racing: tried again, later
    assert [c["countdown"] for c in published.calls] == list(STATUS_RETRY_DELAYS[:2])
    _record_vendor_id(w, sent, vendor_id)  # the outbox commits
    assert published.run_last() == "recorded"
    assert _delivery(w, sent)["status"] == "delivered"
    assert len(published.calls) == 2


def test_a_late_status_never_overwrites_a_later_one(
    tenant_a: Any, sims: dict[str, Any], monkeypatch: Any
) -> None:
    published = Published(monkeypatch)
    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    sent, vendor_id = _sent_but_not_yet_recorded(w)
    _whatsapp_status(w, vendor_id, "delivered")  # raced: kept for later
    _record_vendor_id(w, sent, vendor_id)
    _whatsapp_status(w, vendor_id, "read")  # arrives after the commit: applied at once
    assert published.run_last() == "stale"
    assert _delivery(w, sent)["status"] == "read"


def test_a_twilio_status_callback_before_the_outbox_commit_is_applied(
    tenant_a: Any, sims: dict[str, Any], monkeypatch: Any
) -> None:
    published = Published(monkeypatch)
    w = wire(tenant_a, "sms", sims["sms"])
    sent, sid = _sent_but_not_yet_recorded(w)
    params = {"SmsSid": sid, "SmsStatus": "delivered", "MessageSid": sid, "MessageStatus": "delivered",
              "AccountSid": w.sim.account_sid, "From": w.sim.from_number, "To": "+4915112345678",
              "ApiVersion": "2010-04-01"}  # fmt: skip
    headers = {"X-Twilio-Signature": twilio_signature(w.sim.auth_token, f"http://testserver{w.path}", params)}
    signed = Signed(urlencode(params).encode(), headers, "application/x-www-form-urlencoded", "")
    assert post(Client(), w, signed).status_code == 200
    assert _delivery(w, sent) is None
    _record_vendor_id(w, sent, sid)
    assert published.run_last() == "recorded"
    assert _delivery(w, sent)["status"] == "delivered"


def test_a_status_that_never_matches_is_dropped_after_the_last_try(
    tenant_a: Any, sims: dict[str, Any], monkeypatch: Any
) -> None:
    published = Published(monkeypatch)
    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    before = _unmatched()
    _whatsapp_status(w, "wamid.NOT-OURS", "delivered")
    for _ in STATUS_RETRY_DELAYS:
        assert published.run_last() == "unknown"
    assert len(published.calls) == len(STATUS_RETRY_DELAYS)
    assert [c["kwargs"]["attempt"] for c in published.calls] == list(range(1, len(STATUS_RETRY_DELAYS) + 1))
    assert _unmatched() == before + 1


def test_another_tenant_cannot_apply_a_status_to_this_account(
    tenant_a: Any, tenant_b: Any, sims: dict[str, Any], monkeypatch: Any
) -> None:
    published = Published(monkeypatch)
    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    sent, vendor_id = _sent_but_not_yet_recorded(w)
    _whatsapp_status(w, vendor_id, "delivered")
    _record_vendor_id(w, sent, vendor_id)
    forged = {**published.calls[-1]["kwargs"], "tenant_id": tenant_b.id}
    assert channel_status_task.apply(kwargs=forged).get() == "gone"
    assert _delivery(w, sent) is None


def test_without_a_broker_the_webhook_still_answers(
    tenant_a: Any, sims: dict[str, Any], monkeypatch: Any
) -> None:
    def down(**_: Any) -> None:
        raise OSError("broker down")

    monkeypatch.setattr(channel_status_task, "apply_async", down)
    monkeypatch.setattr(channel_inbound, "STATUS_RETRY_DELAYS", (1,))
    w = wire(tenant_a, "whatsapp", sims["whatsapp"])
    _whatsapp_status(w, "wamid.RACED", "delivered")
