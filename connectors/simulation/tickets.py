"""The base of the ticketing simulators (ServiceNow, Salesforce, HubSpot, Dynamics): an agent helper that
comments on a ticket and/or changes its state and announces it, once and synchronously, to the hub's
registered webhook as the vendor would; without a webhook the hub polls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from connectors.simulation.messages import SimRequest, SimResponse, json_response
from connectors.simulation.server import Simulator
from connectors.simulation.tables import Row, Table


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """The hub endpoint a simulator announces agent activity to, and the secret it signs with (if any)."""

    url: str
    secret: str = ""


#: The ticket states the agent helper understands besides each vendor's own values.
AGENT_STATES = ("open", "resolved", "closed")


class TicketSimulator(Simulator):
    """Base for the ticketing simulators (ServiceNow, Salesforce, HubSpot): an agent helper that comments
    on a ticket and/or changes its state, and announces it to the hub's webhook as the vendor would.

    Admin endpoints: `POST __admin/webhook {"url", "secret"}` (url null: stop announcing),
    `GET __admin/webhooks` (what was sent), `POST __admin/agent {"ticket", "body", "public", "state",
    "author"}` (see `agent`). Announcements go out once, synchronously; without a webhook the hub polls.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Where agent activity is announced (the hub's webhook URL); None: the hub has to poll.
        self.webhook: WebhookTarget | None = None
        #: Every announcement tried, oldest first: {"id", "url", "status", "error"} (for tests and demos).
        self.webhook_log: list[dict[str, Any]] = []

    def register_webhook(self, url: str | None, *, secret: str = "") -> None:
        """Announce agent activity to `url` from now on (None: stop announcing; the hub polls)."""
        self.webhook = WebhookTarget(url, secret) if url else None

    def webhook_secret(self) -> str:
        """The secret deliveries are signed with: the registered one (vendors with their own override)."""
        return self.webhook.secret if self.webhook else ""

    def send_webhook(self, event_id: str, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """POST one announcement to the registered URL, once (no retry: the hub's poll is the safety net).

        Synchronous, so a test or the demo knows the hub has it when the agent helper returns.
        """
        target = self.webhook
        if target is None:
            return {"id": event_id, "url": None, "status": None, "error": "no webhook registered"}
        entry: dict[str, Any] = {"id": event_id, "url": target.url, "status": None, "error": None}
        try:
            # One connection per announcement, like a vendor's webhook sender: a kept-alive socket would
            # pin a request thread (and its database connections) of the receiving test server. A session of
            # its own, not a pooled one: a receiver that closes after the answer without saying so would
            # leave a dead socket in the pool, and the next POST (never retried) would fail on it.
            with requests.Session() as http:
                http.trust_env = False  # never through a proxy from the environment: targets are local
                response = http.post(
                    target.url,
                    data=body,
                    headers={**headers, "Connection": "close"},
                    timeout=10,
                    allow_redirects=False,
                )
            entry["status"] = response.status_code
        except requests.RequestException as exc:
            entry["error"] = type(exc).__name__
        self.webhook_log.append(entry)
        return entry

    @staticmethod
    def ticket_row(table: Table, ticket: str, *, external: str, number: str | None = None) -> Row:
        """Find a ticket by vendor id, by the hub's external id (field `external`) or by its number (field
        `number`); KeyError when there is none or it is deleted."""
        row = table.rows.get(ticket) or table.find(external, ticket)
        if row is None and number is not None:
            row = next((r for r in table.rows.values() if r.data.get(number) == ticket), None)
        if row is None or row.deleted:
            raise KeyError(ticket)
        return row

    @staticmethod
    def agent_check(body: str, state: str | None) -> None:
        """Refuse an agent call that would neither comment nor change the state."""
        if not body.strip() and not state:
            raise ValueError("give a comment body, a state, or both")

    def agent(
        self, *, ticket: str, body: str = "", public: bool = True, state: str | None = None, author: str = ""
    ) -> dict[str, Any]:
        """Act as a support agent on `ticket` (vendor id or number): add a comment (public, or a private
        note) and/or change its state ("open", "resolved", "closed" or a vendor value), then announce it
        to the registered webhook. Returns {"ticket", "comment_id", "state", "webhook"}; KeyError for an
        unknown ticket, ValueError for a bad state or an empty call."""
        raise NotImplementedError(f"{self.vendor} has no tickets")

    def admin(self, request: SimRequest) -> SimResponse:
        action = request.path.removeprefix("/__admin/")
        if action not in ("webhook", "webhooks", "agent"):
            return super().admin(request)
        body = request.json_or_none() if request.body else {}
        if not isinstance(body, dict):
            return json_response(400, {"error": "the body must be a JSON object"})
        if action == "webhook" and request.method == "POST":
            self.register_webhook(body.get("url"), secret=str(body.get("secret") or ""))
            return json_response(200, {"ok": True})
        if action == "webhooks" and request.method == "GET":
            return json_response(200, {"deliveries": self.webhook_log})
        if action == "agent" and request.method == "POST":
            return self._admin_agent(body)
        return super().admin(request)

    def _admin_agent(self, body: dict[str, Any]) -> SimResponse:
        if not isinstance(body.get("ticket"), str | int):
            return json_response(400, {"error": "give {ticket, body, public, state}"})
        try:
            result = self.agent(
                ticket=str(body["ticket"]),
                body=str(body.get("body") or ""),
                public=bool(body.get("public", True)),
                state=str(body["state"]) if body.get("state") else None,
                author=str(body.get("author") or ""),
            )
        except KeyError:
            return json_response(404, {"error": f"no ticket {body['ticket']!r}"})
        except (ValueError, NotImplementedError) as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(200, result)
