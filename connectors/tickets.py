"""Ticket threads: the conversation between a customer and an agent on a vendor ticket (human handoff).

A ticketing connector (ServiceNow, Salesforce Service Cloud, HubSpot, Dynamics 365) that can carry a handoff
implements `TicketThreads` next to its `Connector` methods. Pure like every connector: no Django, no database.

- **Agent → customer**: `ticket_thread` reads a ticket's state and its comments newer than a cursor. Each
  comment says whether the customer may see it (`public`): ServiceNow's `comments` journal is public,
  `work_notes` are not; a Salesforce `CaseComment` is public only with `IsPublished` (an outgoing
  `EmailMessage` is public too); on HubSpot an outgoing e-mail engagement on the ticket is public, a note is
  not; on Dynamics 365 a case note is public only with Power Pages' `*WEB*` prefix. Comments the hub wrote
  itself (the customer's messages appended below) come back with `from_hub=True`, so they are never echoed
  to the customer. Unknown visibility is private: a comment is delivered only when the vendor says it is
  customer-visible.
- **Customer → agent**: the write-only stream `ticket_comments` (`COMMENT_STREAM`), delivered through the
  outbox like any write: a record is `{"external_id": <the comment's hub id>, "fields": {"ticket":
  <the ticket's hub external id>, "body": <text>, "author": <display name, may be "">}}`. The connector
  finds the ticket by the hub's external id (the same correlation it upserts tickets by), appends a
  customer-visible comment, and returns `WriteOutcome(external_id, vendor_id=<comment id>)`. It must be
  idempotent by the comment's external id (the outbox delivers at least once): e.g. a marker in the comment
  that the connector looks for before posting. A ticket that does not exist (yet) is a transient error (the
  ticket's own outbox message may still be in flight), a closed ticket a permanent one.
- **Routing**: the canonical ticket field `queue` (ServiceNow `assignment_group`, Salesforce `OwnerId` of a
  queue, HubSpot `hs_pipeline`, Dynamics 365 a queue by id or name, `AddToQueue`) says who receives a new
  ticket; `TicketThread.queue` reads it back.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.base import Cursor

#: The write-only stream of comments appended to a ticket (customer → agent).
COMMENT_STREAM = "ticket_comments"
#: Longest comment body the hub sends; longer customer messages are cut with an ellipsis.
MAX_COMMENT_CHARS = 4000


class TicketState(enum.StrEnum):
    """A ticket's life as the handoff sees it; each vendor's states map onto these three."""

    OPEN = "open"  # new, in progress, on hold, waiting for the customer: the agent owns the conversation
    RESOLVED = "resolved"  # resolved/solved: the bot takes the conversation back
    CLOSED = "closed"  # closed/cancelled: the bot takes the conversation back


@dataclass(frozen=True, slots=True)
class Comment:
    """One entry of a ticket's thread."""

    #: The vendor's id of the entry (journal sys_id, CaseComment/EmailMessage Id, engagement id): the hub's
    #: de-duplication key, so a comment read twice (webhook and poll) reaches the customer once.
    id: str
    created_at: datetime  # UTC
    body: str  # plain text (HTML stripped by the connector)
    #: Visible to the customer. False for internal/work notes and whenever the vendor does not say.
    public: bool
    author: str = ""  # the agent's display name, "" when unknown
    #: Written by the hub (a customer message appended through `COMMENT_STREAM`): never sent back.
    from_hub: bool = False


@dataclass(frozen=True, slots=True)
class TicketThread:
    """A ticket's state and the comments newer than the cursor it was read with (oldest first)."""

    ticket_id: str  # the vendor's id
    state: TicketState
    comments: list[Comment]
    #: Where to read from next time; `Cursor.advance` over the comments' (created_at, id).
    cursor: Cursor
    queue: str = ""
    #: Vendor fields worth keeping on the handoff (e.g. the agent-facing number INC0010001, the status name).
    details: Mapping[str, Any] = field(default_factory=dict)


class TicketThreads(abc.ABC):
    """What a ticketing connector adds to carry a handoff. Errors are the connectors' typed errors."""

    @abc.abstractmethod
    def ticket_find(self, external_id: str) -> str | None:
        """The vendor id of the ticket the hub created with `external_id`; None when it does not exist."""

    @abc.abstractmethod
    def ticket_thread(self, ticket_id: str, *, cursor: Cursor | None = None) -> TicketThread:
        """Read the ticket (by vendor id) and its comments newer than `cursor` (all of them when None)."""


def supports_threads(connector: object) -> bool:
    """Tell whether a connector instance or class can carry a handoff's conversation."""
    cls = connector if isinstance(connector, type) else type(connector)
    return issubclass(cls, TicketThreads)


def comment_body(text: str) -> str:
    """A customer's message as a comment body: stripped and cut to `MAX_COMMENT_CHARS`."""
    text = text.strip()
    if len(text) <= MAX_COMMENT_CHARS:
        return text
    return text[: MAX_COMMENT_CHARS - 1].rstrip() + "\u2026"
