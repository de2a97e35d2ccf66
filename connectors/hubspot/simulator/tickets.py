"""The support side of a ticket: pipelines, engagements (notes and e-mails logged on it), the agent
helper (an agent writes to the customer or a note and/or moves the stage) and the webhook v3 events,
signed X-HubSpot-Signature-v3, that announce it to the hub as a HubSpot app subscription would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any, ClassVar
from xml.sax.saxutils import escape

from connectors.hubspot.simulator.associations import HubSpotAssociations
from connectors.hubspot.simulator.schema import AGENT_STAGES, APP_ID, PORTAL_ID, iso_ms
from connectors.simulation import Row, SimRequest, SimResponse, json_response


class TicketActivity(HubSpotAssociations):
    """Pipelines, engagements on tickets, the agent helper and signed webhook events."""

    #: The OAuth app's secret (the server's credential): HubSpot signs webhook events with it.
    client_secret: ClassVar[str]

    def pipeline(self, request: SimRequest) -> SimResponse:
        """GET /crm/v3/pipelines/tickets/{id}: the pipeline and its stages in display order."""
        assert request.match is not None
        pipeline_id = request.match.group("id")
        stages = self.pipelines.get(pipeline_id)
        if stages is None:
            return self._error(404, f"Unable to find pipeline {pipeline_id}", "OBJECT_NOT_FOUND")
        now = iso_ms(int(time.time()))
        return json_response(200, {
            "id": pipeline_id, "label": "Support pipeline" if pipeline_id == "0" else pipeline_id,
            "displayOrder": 0, "archived": False, "createdAt": now, "updatedAt": now,
            "stages": [
                {"id": stage, "label": label, "displayOrder": n, "archived": False, "createdAt": now,
                 "updatedAt": now, "metadata": {"ticketState": state}}
                for n, (stage, label, state) in enumerate(stages)
            ],
        })  # fmt: skip

    def engagement_add(
        self, ticket_id: str, object_type: str, props: dict[str, Any], *, ts: int | None = None
    ) -> Row:
        """Log a note or an e-mail on a ticket (stamped now, or at `ts`); the ticket's activity moves."""
        stamp = int(time.time()) if ts is None else ts
        row = self._insert(object_type, {"hs_timestamp": iso_ms(stamp), **props}, ts=stamp)
        self.associate(object_type, row.id, "tickets", ticket_id)
        self.by_type["tickets"].update(ticket_id, {})
        return row

    def engagements(self, ticket_id: str, object_type: str) -> list[Row]:
        """The ticket's notes or e-mails, oldest first."""
        ids = {i for t, i, _n in self.associations.get(("tickets", ticket_id), []) if t == object_type}
        return sorted((self.by_type[object_type].rows[i] for i in ids), key=lambda r: (r.ts, r.id))

    def ticket(self, ticket: str) -> Row:
        """Find a ticket by id or by the hub's external id; KeyError when there is none."""
        return self.ticket_row(self.by_type["tickets"], ticket, external="hub_external_id")

    def webhook_secret(self) -> str:
        """HubSpot signs with the app's client secret unless the test registered another one."""
        return super().webhook_secret() or self.client_secret

    def agent(
        self, *, ticket: str, body: str = "", public: bool = True, state: str | None = None, author: str = ""
    ) -> dict[str, Any]:
        self.agent_check(body, state)
        row = self.ticket(ticket)
        first, _, last = (author or "Sam Agent").partition(" ")
        entry = None
        if body.strip() and public:  # an e-mail to the customer, sent from the ticket
            headers = json.dumps(
                {"from": {"email": "support@hub-demo.sim", "firstName": first, "lastName": last}}
            )
            entry = self.engagement_add(
                row.id,
                "emails",
                {
                    "hs_email_direction": "EMAIL",
                    "hs_email_status": "SENT",
                    "hs_email_subject": "Re: your request",
                    "hs_email_text": body,
                    "hs_email_html": f"<div>{escape(body)}</div>",
                    "hs_email_headers": headers,
                },
            )
        elif body.strip():  # an internal note (HTML, as the editor writes it)
            entry = self.engagement_add(row.id, "notes", {"hs_note_body": f"<p>{escape(body)}</p>"})
        events = []
        if entry is not None:
            events.append(("notes_last_updated", str(entry.ts * 1000)))
        if state:
            stage = AGENT_STAGES.get(state, state)
            self.by_type["tickets"].update(row.id, {"hs_pipeline_stage": stage})
            events.append(("hs_pipeline_stage", stage))
        return {
            "ticket": row.id,
            "number": row.id,
            "comment_id": entry.id if entry else None,
            "state": row.data.get("hs_pipeline_stage"),
            "webhook": self.announce(row.id, events),
        }

    def announce(self, ticket_id: str, changes: list[tuple[str, str]]) -> dict[str, Any]:
        """Webhook v3: a JSON list of ticket.propertyChange events (one per changed property), signed
        X-HubSpot-Signature-v3 = base64(HMAC-SHA256(client secret, method + URI + body + timestamp ms))."""
        now = int(time.time() * 1000)
        events = [
            {
                "eventId": uuid.uuid4().int % 10**10,
                "subscriptionId": 2400001,
                "portalId": PORTAL_ID,
                "appId": APP_ID,
                "occurredAt": now,
                "subscriptionType": "ticket.propertyChange",
                "attemptNumber": 0,
                "objectId": int(ticket_id),
                "propertyName": name,
                "propertyValue": value,
                "changeSource": "CRM_UI",
            }
            for name, value in changes
        ]
        body = json.dumps(events).encode()
        stamp = str(now)
        url = self.webhook.url if self.webhook else ""
        message = b"POST" + url.encode() + body + stamp.encode()
        digest = hmac.new(self.webhook_secret().encode(), message, hashlib.sha256).digest()
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
            "X-HubSpot-Request-Timestamp": stamp,
            "X-HubSpot-Signature-Version": "v3",
        }
        return self.send_webhook(",".join(str(e["eventId"]) for e in events), body, headers)
