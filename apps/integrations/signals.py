"""Signals for the layers above integrations (chat's handoff connects to them in ChatConfig.ready()).

integrations must not import chat, yet two of its events move a handoff on: a vendor webhook naming a
ticket (an agent commented or changed its state) and the delivery of a ticket's outbox message (the handoff
learns the vendor's ticket id, or that the ticket could not be created). Receivers only queue work; they
run in the sender's tenant context and must be cheap.
"""

from __future__ import annotations

from django.dispatch import Signal

#: A verified, new webhook event named tickets of a connection. kwargs: `connection` (Connection),
#: `ticket_ids` (list of the vendor's ticket ids). Sent outside any transaction.
ticket_activity = Signal()

#: An outbox message settled: kwargs `message` (OutboxMessage) and `status` ("delivered" or "dead").
#: Sent after the commit that recorded it.
outbox_settled = Signal()
