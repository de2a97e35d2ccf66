"""A messaging platform's side of a text: the adapter class of a platform account, and replies cut to the
platform's length limit (shared by the inbound loop and later messages' delivery)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from apps.integrations.conf import connector_class
from apps.integrations.models import Connection
from connectors.messaging import ChannelAdapter

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[\u3002\uff01\uff1f])")


def split_text(text: str, limit: int) -> list[str]:
    """Cut `text` into parts of at most `limit` characters at sentence, then word, boundaries."""
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        window = text[: limit + 1]
        cut = max((m.end() for m in _SENTENCE_END.finditer(window) if m.end() <= limit), default=0)
        if cut < limit // 3:  # no sentence end far enough: the last space, else a hard cut
            space = window.rfind(" ", 0, limit + 1)
            cut = space if space > limit // 3 else limit
        parts.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        parts.append(text)
    return [part for part in parts if part]


def reply_parts(reply: Mapping[str, Any], limit: int) -> list[str]:
    """The reply as the platform's plain text: the answer, then one "Sources:" line per cited link."""
    text = str(reply.get("text") or "").strip()
    links = []
    for citation in reply.get("citations") or ():
        url = str(citation.get("url") or "").strip()
        if url:
            title = str(citation.get("title") or "").strip()
            links.append(f"- {title}: {url}" if title else f"- {url}")
    if links:
        text = "\n".join([text, "", "Sources:", *links]) if text else "\n".join(["Sources:", *links])
    return split_text(text, limit)


def channel_adapter_class(connection: Connection) -> type[ChannelAdapter]:
    connector = connector_class(connection.kind)
    adapter: type[ChannelAdapter] = connector.adapter_class  # type: ignore[attr-defined]
    return adapter


def max_text(connection: Connection) -> int:
    return int(channel_adapter_class(connection).max_text)
