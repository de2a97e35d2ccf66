"""Wire formats of the three destination kinds; pure functions over event dicts (no ORM, no I/O).

An event dict is `event_json()` of an audit row: the hashed fields plus `id` (`<tenant>-<seq>`, the key a
SIEM de-duplicates on), `tenant`, `hash` and `prev_hash`, so the receiver can check the chain itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

#: RFC 5424 facility "log audit" (13); the severity comes from the event's outcome.
FACILITY_LOG_AUDIT = 13
SEVERITY = {"success": 6, "denied": 4, "failure": 3}  # informational, warning, error
#: SD-ID `name@<private enterprise number>`; 32473 is IANA's example number (RFC 5612), as no PEN is ours.
SD_ID = "hub@32473"
APP_NAME = "hub"
BOM = b"\xef\xbb\xbf"  # RFC 5424 §6.4: a UTF-8 MSG starts with the BOM


def iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_json(row: Any, *, tenant_slug: str) -> dict[str, Any]:
    """What every destination receives for one audit event."""
    return {
        "id": f"{tenant_slug}-{row.seq}",
        "tenant": tenant_slug,
        "seq": row.seq,
        "occurred_at": iso_utc(row.occurred_at),
        "action": row.action,
        "outcome": row.outcome,
        "actor_id": row.actor_id,
        "actor_label": row.actor_label,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "target_label": row.target_label,
        "changes": row.changes,
        "ip": row.ip,
        "user_agent": row.user_agent,
        "request_id": row.request_id,
        "hash": row.hash,
        "prev_hash": row.prev_hash,
    }


def _dumps(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str).encode()


# --- syslog (RFC 5424 message, RFC 5425 / RFC 6587 §3.4.1 octet-counting frame) ---------------------------
def _printable(value: str, limit: int) -> str:
    """PRINTUSASCII (33..126) only, at most `limit` characters; "-" (NILVALUE) when empty."""
    text = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)[:limit]
    return text or "-"


def _sd_value(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(event: Mapping[str, Any], *, hostname: str, test: bool = False) -> bytes:
    """One RFC 5424 SYSLOG-MSG: PRI from the outcome, MSGID the action, the chain position as SD."""
    pri = FACILITY_LOG_AUDIT * 8 + SEVERITY.get(str(event.get("outcome")), 5)
    params = {"tenant": event["tenant"], "seq": event["seq"], "hash": event["hash"]}
    if test:
        params["test"] = "true"
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    header = " ".join(
        [
            f"<{pri}>1",
            str(event["occurred_at"]),
            _printable(hostname, 255),
            APP_NAME,
            "-",
            _printable(str(event["action"]), 32),
            sd,
        ]
    )
    return header.encode() + b" " + BOM + _dumps(event)


def octet_frame(message: bytes) -> bytes:
    """MSG-LEN SP SYSLOG-MSG (RFC 5425 §4.3)."""
    return str(len(message)).encode() + b" " + message


def syslog_payload(events: Iterable[Mapping[str, Any]], *, hostname: str, test: bool = False) -> bytes:
    return b"".join(octet_frame(syslog_message(e, hostname=hostname, test=test)) for e in events)


# --- Splunk HEC (/services/collector/event: concatenated JSON event objects) ------------------------------
def hec_payload(events: Sequence[Mapping[str, Any]], *, hostname: str) -> bytes:
    parts = []
    for event in events:
        when = datetime.strptime(str(event["occurred_at"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        parts.append(
            _dumps(
                {
                    "time": round(when.timestamp(), 6),
                    "host": hostname,
                    "source": "hub:audit",
                    "sourcetype": "_json",
                    "event": dict(event),
                }
            )
        )
    return b"".join(parts)


# --- generic webhook (JSON lines, HMAC-SHA256 over "timestamp.body") --------------------------------------
def jsonl_payload(events: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(_dumps(e) + b"\n" for e in events)


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>` (the X-Hub-Signature-256 header)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def test_event(*, tenant_slug: str, at: datetime) -> dict[str, Any]:
    """A synthetic line that is not an audit event (no seq in the chain): marked `"test": true`."""
    return {
        "id": f"{tenant_slug}-test-{int(at.timestamp() * 1000)}",
        "tenant": tenant_slug,
        "seq": 0,
        "occurred_at": iso_utc(at),
        "action": "siem.test",
        "outcome": "success",
        "test": True,
        "hash": "",
        "prev_hash": "",
    }
