"""A messaging platform account as a connection: the channel adapters behind the `Connector` interface.

A channel's platform account (a WhatsApp number, a Slack app, a Teams bot, a Twilio number) is an integrations
`Connection` of the platform's kind, so it gets what connections already have: credentials encrypted and bound
to the origin they were entered for, a console form built from the config fields, "test", a circuit breaker,
and the outbox — replies are outbox messages on the write-only stream "messages", delivered in order per
conversation (the ordering key), retried with backoff, dead-lettered when the platform refuses for good.

One record: `{"external_id": ..., "fields": {"reply_ref": {...}, "text": "..."}}`. Platforms have no upsert
by our id, so a send is at least once across a crash between the platform's answer and the outbox commit;
within one batch a message is never sent twice. A permanent refusal of one message (a closed window, a bad
recipient) fails that record only; an outage, a rate limit or refused credentials end the batch (the rest is
retried later, in order) and raise if nothing was sent, so a rate limit's Retry-After reaches the outbox.

Late replies (issue 18): `"template": true` in the fields sends the text in the account's approved template
for replies outside WhatsApp's 24-hour window (`send_agent_template`); a plain text the platform refuses
because the window closed while it waited (an outage, a backlog) falls back to that template when the account
has one, else it is dead-lettered with the platform's reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from connectors.base import Connector, Cursor, Record, Stream, WriteOutcome, WriteResult
from connectors.errors import AuthFailed, ConnectorError
from connectors.http import HttpSession
from connectors.messaging import ChannelAdapter, KeyCache, Sent
from connectors.slack.channel import SlackAdapter
from connectors.teams.channel import TeamsAdapter
from connectors.twilio.channel import TwilioSmsAdapter
from connectors.whatsapp.channel import WhatsAppAdapter

MESSAGES = "messages"


class MessagingConnector(Connector):
    """Base of the four platform connectors; a subclass names its adapter class."""

    adapter_class: ClassVar[type[ChannelAdapter]]

    def __init__(
        self, config: Mapping[str, Any], *, session: HttpSession, key_cache: KeyCache | None = None
    ) -> None:
        super().__init__(config, session=session)
        settings = {k: v for k, v in self.config.items() if k != "field_map"}
        self.adapter = self.adapter_class(config=settings, session=session, key_cache=key_cache)

    def check_connection(self) -> None:
        self.adapter.test()

    def streams(self) -> list[Stream]:
        return [Stream(MESSAGES, "messages", readable=False, writable=True)]

    def read(self, stream: str, *, cursor: Cursor | None = None) -> Iterator[Record]:
        self.stream(stream)  # a permanent error: the only stream cannot be read
        return iter(())

    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Send each record's text to its reply_ref, in order; see the module docstring for failures."""
        self.stream(stream, for_write=True)
        result = WriteResult()
        for record in records:
            fields = record.get("fields") or {}
            reply_ref, text = fields.get("reply_ref"), fields.get("text")
            if not isinstance(reply_ref, Mapping) or not isinstance(text, str) or not text:
                result.outcomes.append(
                    WriteOutcome(record["external_id"], error="A message needs a reply_ref and a text.")
                )
                continue
            try:
                sent = self._send(reply_ref, text, template=fields.get("template") is True)
            except ConnectorError as exc:
                if exc.permanent and not isinstance(exc, AuthFailed):
                    # About this message (a closed window, a refused recipient): it alone is dead-lettered.
                    result.outcomes.append(WriteOutcome(record["external_id"], error=exc.message))
                    continue
                if not result.outcomes:
                    raise  # the platform or the account fails: the outbox retries (or parks) the batch
                break  # this record and the rest are retried later, in order
            result.outcomes.append(
                WriteOutcome(record["external_id"], vendor_id=sent.platform_message_id, created=True)
            )
        return result

    def _send(self, reply_ref: Mapping[str, Any], text: str, *, template: bool) -> Sent:
        """Send as text, or in the agent template when asked or when the window closed meanwhile."""
        whatsapp = self.adapter if isinstance(self.adapter, WhatsAppAdapter) else None
        if template:
            if whatsapp is None:
                raise ConnectorError(f"{self.kind} has no message templates", code="no_template")
            return whatsapp.send_agent_template(reply_ref=reply_ref, text=text)
        try:
            return self.adapter.send(reply_ref=reply_ref, text=text)
        except ConnectorError as exc:
            if exc.code != "window_closed" or whatsapp is None or whatsapp.agent_template() is None:
                raise
            return whatsapp.send_agent_template(reply_ref=reply_ref, text=text)


def _connector(adapter: type[ChannelAdapter], label: str) -> type[MessagingConnector]:
    fields = adapter.config_fields
    attrs = {
        "kind": adapter.kind,
        "label": label,
        "adapter_class": adapter,
        "config_schema": fields,
        "sensitive_fields": tuple(f.name for f in fields if f.secret),
        "__doc__": f"{label} account of a chat channel (connectors/messaging_connector.py).",
        "__module__": __name__,
    }
    return type(f"{adapter.__name__.removesuffix('Adapter')}Connector", (MessagingConnector,), attrs)


WhatsAppConnector = _connector(WhatsAppAdapter, "WhatsApp Cloud API")
SlackConnector = _connector(SlackAdapter, "Slack")
TeamsConnector = _connector(TeamsAdapter, "Microsoft Teams (Bot Framework)")
TwilioSmsConnector = _connector(TwilioSmsAdapter, "SMS (Twilio)")
