"""The wire formats, pure: RFC 5424 fields and escaping, octet counting, Splunk HEC objects, the webhook
signature (a fixed vector), and test lines that cannot pass for audit events."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from apps.siem import formats
from tests.siem.helpers import decode_concatenated, parse_syslog, split_frames

EVENT = {
    "id": "acme-7", "tenant": "acme", "seq": 7, "occurred_at": "2026-12-07T04:20:00.000001Z",
    "action": "a" * 40 + " x", "outcome": "failure", "actor_label": "zoë", "changes": {"k": 'v "]\\'},
    "hash": "h" * 64, "prev_hash": "p" * 64,
}  # fmt: skip


def test_syslog_message_fields_escaping_and_octet_counting() -> None:
    frames, rest = split_frames(formats.syslog_payload([EVENT, EVENT], hostname="hub host\u00e9"))
    assert rest == b"" and len(frames) == 2
    parsed = parse_syslog(frames[0])
    assert (parsed["facility"], parsed["severity"]) == (13, 3)  # log audit, error for a failure
    assert parsed["hostname"] == "hub_host_"  # PRINTUSASCII only, no spaces
    assert parsed["msgid"] == "a" * 32  # at most 32 characters
    assert parsed["sd"] == {"tenant": "acme", "seq": "7", "hash": "h" * 64}
    assert parsed["event"] == EVENT  # UTF-8 JSON after the BOM, unchanged
    # MSG-LEN counts octets, not characters.
    message = formats.syslog_message({**EVENT, "tenant": 'ac"me]'}, hostname="h")
    assert formats.octet_frame(message).startswith(str(len(message)).encode() + b" <107>1 ")
    assert b'tenant="ac\\"me\\]"' in message


def test_hec_payload_is_concatenated_event_objects() -> None:
    objects = decode_concatenated(formats.hec_payload([EVENT, {**EVENT, "seq": 8}], hostname="hub-1"))
    assert [o["event"]["seq"] for o in objects] == [7, 8]
    assert objects[0]["time"] == datetime(2026, 12, 7, 4, 20, 0, 1, tzinfo=UTC).timestamp()
    assert {k: objects[0][k] for k in ("host", "source", "sourcetype")} == {
        "host": "hub-1", "source": "hub:audit", "sourcetype": "_json"
    }  # fmt: skip


def test_webhook_body_is_json_lines_and_the_signature_covers_timestamp_and_body() -> None:
    body = formats.jsonl_payload([EVENT, EVENT])
    assert body.endswith(b"\n") and [json.loads(line) for line in body.splitlines()] == [EVENT, EVENT]
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert formats.webhook_signature("s3cret", "1700000000", body) == f"sha256={expected}"
    assert formats.webhook_signature("s3cret", "1700000001", body) != f"sha256={expected}"


def test_a_test_line_is_marked_and_has_no_chain_position() -> None:
    line = formats.test_event(tenant_slug="acme", at=datetime(2026, 1, 1, tzinfo=UTC))
    assert line["test"] is True and line["seq"] == 0 and line["action"] == "siem.test"
    assert "test" in line["id"] and line["hash"] == ""
    parsed = parse_syslog(formats.syslog_message(line, hostname="h", test=True))
    assert parsed["sd"]["test"] == "true"
