"""Comment text shared by the ticketing connectors: the hub's idempotency marker and HTML to plain text.

A comment the hub appends (a customer's message, `connectors.tickets.COMMENT_STREAM`) ends with a marker
`[hub:<the comment's external id>]`. Before posting, a connector looks for the marker on the ticket, so a
redelivered outbox message adds no second comment; reading a thread back, the marker is stripped and the
comment flagged `from_hub`, so the hub never echoes the customer's own words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
from typing import Any

from connectors.base import Cursor, Record, WriteOutcome
from connectors.errors import ConnectorError
from connectors.tickets import MAX_COMMENT_CHARS, Comment, comment_body

#: What an external id may contain to travel in a marker (and in ServiceNow's encoded queries).
EXTERNAL_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")
_MARK = re.compile(r"\s*\[hub:([A-Za-z0-9._:@/+=-]{1,200})\]\s*\Z")
_BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"})
_SKIP = frozenset({"script", "style", "head", "title"})


def marker(external_id: str) -> str:
    """The tag that identifies a hub-written comment; refuses ids that could break it (permanent)."""
    if not EXTERNAL_ID.match(external_id):
        allowed = "letters, digits and . _ : @ / + = - (1-200 characters)"
        raise ConnectorError(f"comment external ids may only contain {allowed}", permanent=True)
    return f"[hub:{external_id}]"


def marked(text: str, external_id: str) -> str:
    """A customer's message as a comment body ending with its marker, `MAX_COMMENT_CHARS` at most in all
    (Salesforce's CaseComment holds 4,000 characters: the marker must survive the cut)."""
    tag = marker(external_id)
    text = comment_body(text)
    room = MAX_COMMENT_CHARS - len(tag) - 2
    if len(text) > room:
        text = text[: room - 1].rstrip() + "\u2026"
    return f"{text}\n\n{tag}"


def unmarked(text: str) -> tuple[str, str | None]:
    """Split a comment into its text and the hub external id of its trailing marker (None: not the hub's)."""
    found = _MARK.search(text)
    if found is None:
        return text.strip(), None
    return text[: found.start()].strip(), found.group(1)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Plain text of an HTML comment body: block elements become line breaks, entities are decoded,
    scripts and styles vanish, runs of blank lines collapse."""
    if "<" not in markup and "&" not in markup:
        return markup.strip()
    parser = _Text()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)  # convert_charrefs: entities are already decoded, once
    lines = [re.sub(r"[ \t\r\f\v\xa0]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def newer(comments: Iterable[Comment], cursor: Cursor | None) -> tuple[list[Comment], Cursor]:
    """The comments `cursor` does not cover, oldest first, and the cursor that covers them too.

    Vendor times are second-precise: reads ask for `>=` the cursor's second and skip the ids it has seen.
    """
    cursor = cursor or Cursor()
    fresh: list[Comment] = []
    for comment in sorted(comments, key=lambda c: (c.created_at, c.id)):
        record = Record(comment.id, comment.created_at, {}, {})
        if not cursor.covers(record):
            fresh.append(comment)
            cursor = cursor.advance(record)
    return fresh, cursor


def comment_request(
    record: Mapping[str, Any], vendor: str
) -> tuple[str, Mapping[str, Any], str] | WriteOutcome:
    """A comment record's external id, fields and ticket external id, or the outcome that fails it for good
    before any call: an id the marker cannot carry, or no ticket named."""
    ext = str(record["external_id"])
    fields = record.get("fields") or {}
    ticket_ext = str(fields.get("ticket") or "")
    try:
        marker(ext)
    except ConnectorError as exc:
        return WriteOutcome(ext, error=f"{vendor}: {exc}")
    if not ticket_ext:
        return WriteOutcome(ext, error=f"{vendor}: the comment names no ticket")
    return ext, fields, ticket_ext


def ticket_fields(stream: str, fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """Drop an empty canonical `queue` from a ticket: "no queue" means the vendor's default assignment,
    and an empty owner/pipeline id would be refused (Salesforce, HubSpot) or clear the group (ServiceNow)."""
    if stream == "tickets" and "queue" in fields and not fields["queue"]:
        return {k: v for k, v in fields.items() if k != "queue"}
    return fields
