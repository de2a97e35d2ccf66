"""The hash chain: canonical event bytes, the link rule and what signatures cover, shared by recording,
verifying and exports."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
#: What a sensitive value reads as in a recorded event's `changes` (services.censor writes it).
CENSORED = "***"
HASHED_FIELDS = (
    "seq",
    "tenant_id",
    "occurred_at",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "changes",
    "ip",
    "user_agent",
    "request_id",
    "outcome",
)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def canonical(event: dict[str, Any]) -> bytes:
    """Deterministic JSON of the hashed fields (sorted keys, no spaces, UTC microsecond timestamps)."""
    payload = {name: _iso(event.get(name)) for name in HASHED_FIELDS}
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def link_hash(prev_hash: str, event: dict[str, Any]) -> str:
    """hash = SHA-256(prev_hash || canonical JSON of the event)."""
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()


def event_dict(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in (*HASHED_FIELDS, "prev_hash", "hash")}


ANCHOR_PURPOSE = "hub-audit-anchor/v1"


def anchor_message(*, tenant_id: int, seq: int, hash: str, anchored_at: datetime | str) -> bytes:
    """What an anchor's Ed25519 signature covers; the purpose keeps other signed bytes from passing for it."""
    payload = {
        "purpose": ANCHOR_PURPOSE,
        "tenant_id": tenant_id,
        "seq": seq,
        "hash": hash,
        "anchored_at": _iso(anchored_at),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """What the signature covers: the manifest without its signature, canonically encoded."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()
