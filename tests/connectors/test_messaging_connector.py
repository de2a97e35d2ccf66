"""A platform account as a connection: the outbox's `write` sends each reply once, in order (WhatsApp sim)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.errors import ConnectorError, RateLimited
from connectors.messaging_connector import MESSAGES, MessagingConnector, WhatsAppConnector
from connectors.registry import load_registry
from connectors.testing import simulator_session
from connectors.whatsapp.simulator import WhatsAppSimulator

USER = "4915112345678"


@pytest.fixture
def sim(tmp_path: Any) -> Iterator[WhatsAppSimulator]:
    sim = WhatsAppSimulator(state_dir=tmp_path).start()
    sim.enforce_window = False  # outside this test's subject: the 24-hour window
    yield sim
    sim.stop()


def connector(sim: WhatsAppSimulator) -> MessagingConnector:
    d = sim.describe()
    keys = ("app_secret", "verify_token", "access_token", "phone_number_id", "api_base")
    return WhatsAppConnector({k: d[k] for k in keys}, session=simulator_session(sim))


def record(n: int, sim: WhatsAppSimulator, text: str | None = None) -> dict[str, Any]:
    reply_ref = {"phone_number_id": sim.describe()["phone_number_id"], "to": USER}
    return {"external_id": f"msg:{n}", "fields": {"reply_ref": reply_ref, "text": text or f"reply {n}"}}


def test_the_platform_kinds_are_registered_connectors() -> None:
    registry = load_registry()
    assert {"whatsapp", "slack", "teams", "sms"} <= set(registry)
    assert set(registry["whatsapp"].sensitive_fields) == {"app_secret", "verify_token", "access_token"}


def test_write_sends_each_record_in_order_and_reports_the_platform_ids(sim: WhatsAppSimulator) -> None:
    result = connector(sim).write(MESSAGES, [record(1, sim), record(2, sim)])
    assert [o.external_id for o in result.outcomes] == ["msg:1", "msg:2"]
    assert all(o.vendor_id and o.vendor_id.startswith("wamid.") and o.error is None for o in result.outcomes)
    assert [m["text"] for m in sim.sent()] == ["reply 1", "reply 2"]


def test_an_outage_or_rate_limit_before_any_send_reaches_the_outbox(sim: WhatsAppSimulator) -> None:
    c = connector(sim)
    sim.inject(errors=[{"status": 503, "count": 1}])
    with pytest.raises(ConnectorError) as outage:
        c.write(MESSAGES, [record(1, sim), record(2, sim)])
    assert not outage.value.permanent and sim.sent() == []
    sim.inject(rate_limit={"count": 1, "retry_after": 7})
    with pytest.raises(RateLimited) as limited:
        c.write(MESSAGES, [record(1, sim)])
    assert limited.value.retry_after == 7 and sim.sent() == []


def test_a_message_the_platform_refuses_fails_alone(sim: WhatsAppSimulator) -> None:
    bad = record(2, sim)
    bad["fields"]["reply_ref"] = {**bad["fields"]["reply_ref"], "to": "12"}  # not a phone number
    result = connector(sim).write(MESSAGES, [record(1, sim), bad, record(3, sim)])
    assert [(o.external_id, o.error is None) for o in result.outcomes] == [
        ("msg:1", True),
        ("msg:2", False),
        ("msg:3", True),
    ]
    assert [m["text"] for m in sim.sent()] == ["reply 1", "reply 3"]


def test_refused_credentials_end_the_batch(sim: WhatsAppSimulator) -> None:
    c = connector(sim)
    sim.expire_tokens()
    with pytest.raises(ConnectorError) as refused:
        c.write(MESSAGES, [record(1, sim), record(2, sim)])
    assert refused.value.permanent and sim.sent() == []


def test_a_record_without_text_is_a_permanent_per_record_error(sim: WhatsAppSimulator) -> None:
    bad = {"external_id": "msg:9", "fields": {"reply_ref": {"to": USER}}}
    result = connector(sim).write(MESSAGES, [bad])
    assert result.failed and result.failed[0].external_id == "msg:9" and sim.sent() == []


def test_the_stream_cannot_be_read(sim: WhatsAppSimulator) -> None:
    with pytest.raises(ConnectorError) as refused:
        list(connector(sim).read(MESSAGES))
    assert refused.value.permanent
