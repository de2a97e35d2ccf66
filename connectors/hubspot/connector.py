"""HubSpot CRM v3 over plain HTTP (the official client retries nothing and hides headers we need):
incremental search restarted at the 10,000-result cap; batch upsert by idProperty, 207 errors per record.

Ticket threads (handoff) are the ticket's engagements, read through associations v4 and batch reads (both
consistent at once, unlike search): an outgoing e-mail (direction EMAIL) is the agent writing to the
customer, so it is public; notes are internal; an incoming e-mail (INCOMING_EMAIL) is the customer's own
words, never an agent reply, so it is not delivered (public False). The customer's chat messages are
appended as INCOMING_EMAIL e-mails: the agent sees them in the ticket's timeline as the customer's mail,
and they come back `from_hub` (marker) as well as private."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from connectors.base import ConfigField, Cursor, HttpConnector, Record, Stream, WriteOutcome, WriteResult, utc
from connectors.erasure import ERASURE_STREAM, erasure_targets
from connectors.errors import AuthFailed, ConnectorError, InvalidConfig, RateLimited, VendorUnavailable
from connectors.http import HttpSession, hubspot_limit, hubspot_quota
from connectors.ticket_text import comment_request, html_to_text, marked, newer, ticket_fields, unmarked
from connectors.tickets import COMMENT_STREAM, Comment, TicketState, TicketThread, TicketThreads

OBJECTS: dict[str, tuple[str, bool]] = {  # stream -> (object type, writable)
    "contacts": ("contacts", True),
    "accounts": ("companies", True),
    "tickets": ("tickets", True),
    "orders": ("orders", False),
    "leads": ("leads", True),
}
BATCH = 100
ASSOCIATION_PAGE = 500
DEFAULT_PIPELINE = "0"  # every portal's default ticket pipeline
EMAIL_TO_TICKET = 224  # HubSpot-defined association type id (e-mail -> ticket)
EMAIL_PROPERTIES = ["hs_email_text", "hs_email_html", "hs_email_direction", "hs_email_headers"]
NOTE_PROPERTIES = ["hs_note_body"]


def modified_property(object_type: str) -> str:
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def stage_set(value: Any) -> frozenset[str]:
    return frozenset(s.strip() for s in str(value or "").split(",") if s.strip())


class HubSpotConnector(HttpConnector, TicketThreads):
    kind = "hubspot"
    label = "HubSpot"
    config_schema = (
        ConfigField("base_url", "API base URL", default="https://api.hubapi.com", url=True),
        ConfigField("auth", "Auth", default="private_app", choices=("private_app", "oauth")),
        ConfigField("access_token", "Private app token", secret=True),
        ConfigField("client_id", "OAuth client id"),
        ConfigField("client_secret", "OAuth client secret", secret=True),
        ConfigField("refresh_token", "OAuth refresh token", secret=True),
        ConfigField("page_size", "Search page size (max 200)", default=200),
        ConfigField("id_property", "Unique property for upserts", default="hub_external_id"),
        ConfigField("search_cap", "Results one search can page through", default=10_000),
        ConfigField("closed_stages", "Ticket stages that mean closed (comma-separated ids)", default="4"),
        ConfigField("resolved_stages", "Ticket stages that mean resolved (comma-separated ids)", default=""),
    )
    sensitive_fields = ("access_token", "client_secret", "refresh_token")
    default_field_map = {
        "contacts": {"first_name": "firstname", "last_name": "lastname", "email": "email", "phone": "phone",
                     "country": "country", "locale": "hs_language", "company": "company"},
        "accounts": {"name": "name", "website": "domain", "country": "country", "industry": "industry"},
        "tickets": {"subject": "subject", "description": "content", "status": "hs_pipeline_stage",
                    "priority": "hs_ticket_priority", "queue": "hs_pipeline"},
        "orders": {"number": "hs_order_name", "status": "hs_pipeline_stage", "amount": "hs_total_price",
                   "currency": "hs_currency_code"},
        "leads": {"name": "hs_lead_name", "first_name": "firstname", "last_name": "lastname",
                  "email": "email", "company": "company"},
    }  # fmt: skip

    def __init__(self, config: Mapping[str, Any], *, session: HttpSession) -> None:
        super().__init__(config, session=session)
        self.base_url = str(self.config["base_url"]).rstrip("/")
        self.uses_tokens = self.config["auth"] == "oauth"
        if not self.uses_tokens and not self.config["access_token"]:
            raise InvalidConfig("hubspot: a private app token is required")
        if self.uses_tokens and not (self.config["client_id"] and self.config["refresh_token"]):
            raise InvalidConfig("hubspot: OAuth needs client_id, client_secret and refresh_token")
        self.session.quota_parser = hubspot_quota
        self._access: str | None = None
        self._expires_at = 0.0
        self._first_stages: dict[str, str] = {}  # ticket pipeline -> its first stage

    def auth_headers(self, *, refresh: bool) -> dict[str, str]:
        if not self.uses_tokens:
            return {"Authorization": f"Bearer {self.config['access_token']}"}
        if refresh or self._access is None or time.monotonic() >= self._expires_at:
            self._refresh()
        return {"Authorization": f"Bearer {self._access}"}

    def _refresh(self) -> None:
        """Refresh ahead of expiry from `expires_in` (HubSpot asks clients not to wait for the 401)."""
        cfg = self.config
        response = self.session.post(
            self.base_url + "/oauth/v1/token",
            data={"grant_type": "refresh_token", "client_id": cfg["client_id"],
                  "client_secret": cfg["client_secret"], "refresh_token": cfg["refresh_token"]},
        )  # fmt: skip
        if response.status_code >= 500:
            raise VendorUnavailable(f"HubSpot OAuth failed with HTTP {response.status_code}")
        if response.status_code != 200:
            raise AuthFailed(self._message(response), status=response.status_code)
        body = self.json(response)
        with self.expecting("the OAuth token request"):
            self._access = str(body["access_token"])
            self.session.add_secret(self._access)
            self._expires_at = time.monotonic() + float(body.get("expires_in", 1800)) - 60

    def rate_limit(self, response: requests.Response) -> RateLimited | None:
        return hubspot_limit(response)

    def error_text(self, response: requests.Response) -> str:
        body = response.json()
        return f"{body.get('category', 'ERROR')}: {body['message']} [HTTP {response.status_code}]"

    # --- interface --------------------------------------------------------------------------------

    def check_connection(self) -> None:
        """Fetch each object's property list and reject field-map entries the portal does not have."""
        for stream in self.streams():
            if not stream.readable:
                continue
            what = f"the {stream.vendor_object} property list"
            response = self.request("GET", f"/crm/v3/properties/{stream.vendor_object}")
            with self.expecting(what):
                known = {p["name"] for p in self.rows(self.json(response), "results", what)}
            missing = sorted(set(self.field_map[stream.name].values()) - known)
            if missing:
                raise InvalidConfig(f"HubSpot {stream.vendor_object} has no property {', '.join(missing)}")

    def streams(self) -> list[Stream]:
        streams = [Stream(name, obj, writable=writable) for name, (obj, writable) in OBJECTS.items()]
        return [
            *streams,
            Stream(COMMENT_STREAM, "emails", readable=False, writable=True),
            Stream(ERASURE_STREAM, "contacts", readable=False, writable=True),
        ]

    def read(self, stream: str, *, cursor: Cursor | None = None) -> Iterator[Record]:
        """Search ascending by last-modified; at the search cap, start a new search from the last value."""
        object_type = self.stream(stream).vendor_object
        prop = modified_property(object_type)
        seen = cursor or Cursor()
        since_ms = int(seen.value.timestamp() * 1000) if seen.value else 0
        limit, cap = int(self.config["page_size"]), int(self.config["search_cap"])
        properties = list(dict.fromkeys([prop, *self.field_map[stream].values()]))
        after: str | None = None
        while True:
            query: dict[str, Any] = {
                "filterGroups": [
                    {"filters": [{"propertyName": prop, "operator": "GTE", "value": str(since_ms)}]}
                ],
                "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                "properties": properties,
                "limit": limit,
            }
            if after:
                query["after"] = after
            page = self.json(self.request("POST", f"/crm/v3/objects/{object_type}/search", json=query))
            what = f"the {object_type} search"
            with self.expecting(what):
                records = [self._record(stream, raw) for raw in self.rows(page, "results", what)]
                after = ((page.get("paging") or {}).get("next") or {}).get("after")
                if after is not None:
                    after = str(int(after))
            for record in records:
                if not seen.covers(record):
                    yield record
                    seen = seen.advance(record)
            if not after:
                return
            if int(after) + limit > cap:
                assert seen.value is not None
                restart = int(seen.value.timestamp() * 1000)
                if restart == since_ms:
                    raise ConnectorError(f"HubSpot: more than {cap} {object_type} share one timestamp", True)
                since_ms, after = restart, None

    def _record(self, stream: str, raw: dict[str, Any]) -> Record:
        updated = datetime.fromisoformat(raw["updatedAt"].replace("Z", "+00:00")).astimezone(UTC)
        props = raw.get("properties") or {}
        return Record(str(raw["id"]), utc(updated), self.to_canonical(stream, props), raw,
                      deleted=bool(raw.get("archived")))  # fmt: skip

    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        object_type = self.stream(stream, for_write=True).vendor_object
        if stream == COMMENT_STREAM:
            return self._comments_write(records)
        if stream == ERASURE_STREAM:
            return self._erasure_write(records)
        id_property = str(self.config["id_property"])
        result = WriteResult()
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            inputs: list[dict[str, Any]] = [
                {
                    "idProperty": id_property,
                    "id": str(r["external_id"]),
                    "properties": self.to_vendor(stream, ticket_fields(stream, r["fields"])),
                }
                for r in batch
            ]
            refused = self._new_ticket_defaults(inputs) if object_type == "tickets" else {}
            inputs = [i for i in inputs if i["id"] not in refused]
            done: dict[str, Any] = {}
            failed: dict[str, str] = dict(refused)
            if inputs:
                response = self.request(
                    "POST", f"/crm/v3/objects/{object_type}/batch/upsert", json={"inputs": inputs}
                )
                body = self.json(response)
                what = f"the {object_type} batch upsert"
                with self.expecting(what):
                    done = {
                        str(r["properties"].get(id_property)): r for r in self.rows(body, "results", what)
                    }
                    failed |= {
                        str(i): str(e["message"])
                        for e in body.get("errors", [])
                        for i in e.get("context", {}).get("ids", [])
                    }
            for record in batch:
                ext = str(record["external_id"])
                if ext in done:
                    with self.expecting(f"the {object_type} batch upsert"):
                        vendor_id, created = str(done[ext]["id"]), bool(done[ext].get("new"))
                    result.outcomes.append(WriteOutcome(ext, vendor_id, created=created))
                else:
                    result.outcomes.append(
                        WriteOutcome(ext, error=failed.get(ext, "HubSpot returned no result"))
                    )
        return result

    def _new_ticket_defaults(self, inputs: list[dict[str, Any]]) -> dict[str, str]:
        """Give tickets about to be created their pipeline's first stage: HubSpot creates no ticket without
        `hs_pipeline_stage`, and stage ids belong to one pipeline (the default pipeline "0" when no queue
        names one). Existing tickets keep theirs (an agent may have moved them). Returns refused ids."""
        id_property = str(self.config["id_property"])
        what = "the tickets batch read"
        query = {
            "idProperty": id_property,
            "properties": [id_property],
            "inputs": [{"id": i["id"]} for i in inputs],
        }
        response = self.request("POST", "/crm/v3/objects/tickets/batch/read", json=query)
        # 207 names the ids it did not find: exactly the new tickets.
        with self.expecting(what):
            existing = {
                str(r["properties"].get(id_property)) for r in self.rows(self.json(response), "results", what)
            }
        refused: dict[str, str] = {}
        for item in inputs:
            props = item["properties"]
            if item["id"] in existing or props.get("hs_pipeline_stage"):
                continue
            pipeline = str(props.get("hs_pipeline") or DEFAULT_PIPELINE)
            stage = self._first_stage(pipeline)
            if stage is None:
                refused[item["id"]] = f"HubSpot: ticket pipeline {pipeline} does not exist (check the queue)"
            else:
                props["hs_pipeline_stage"] = stage
        return refused

    def _first_stage(self, pipeline: str) -> str | None:
        """The first stage (by display order) of a ticket pipeline; None when there is no such pipeline."""
        if pipeline not in self._first_stages:
            try:
                response = self.request("GET", f"/crm/v3/pipelines/tickets/{quote(pipeline, safe='')}")
            except ConnectorError as exc:
                if exc.status == 404:
                    return None
                raise
            what = f"the ticket pipeline {pipeline}"
            with self.expecting(what):
                stages = sorted(
                    self.rows(self.json(response), "stages", what), key=lambda s: s["displayOrder"]
                )
                self._first_stages[pipeline] = str(stages[0]["id"])
        return self._first_stages[pipeline]

    # --- ticket threads (handoff) -----------------------------------------------------------------

    def _ticket(self, ticket: str, *, by_external_id: bool) -> dict[str, Any] | None:
        """GET one ticket by id or by the hub's external id (a unique property); None when it is not there."""
        params = {"properties": "hs_pipeline,hs_pipeline_stage,subject"}
        if by_external_id:
            params["idProperty"] = str(self.config["id_property"])
        try:
            response = self.request("GET", f"/crm/v3/objects/tickets/{quote(ticket, safe='')}", params=params)
        except ConnectorError as exc:
            if exc.status == 404:
                return None
            raise
        body = self.json(response)
        with self.expecting("the ticket"):
            if not isinstance(body, dict) or not isinstance(body["properties"], dict):
                raise TypeError("the ticket is not an object with properties")
            return body

    def ticket_find(self, external_id: str) -> str | None:
        found = self._ticket(external_id, by_external_id=True)
        with self.expecting("the ticket"):
            return str(found["id"]) if found else None

    def _state(self, stage: str) -> TicketState:
        if stage in stage_set(self.config["resolved_stages"]):
            return TicketState.RESOLVED
        if stage in stage_set(self.config["closed_stages"]):
            return TicketState.CLOSED
        return TicketState.OPEN

    def ticket_thread(self, ticket_id: str, *, cursor: Cursor | None = None) -> TicketThread:
        if not ticket_id.isdigit():
            raise ConnectorError(f"HubSpot: {ticket_id!r} is not a ticket id", permanent=True)
        ticket = self._ticket(ticket_id, by_external_id=False)
        if ticket is None:
            raise ConnectorError(f"HubSpot: ticket {ticket_id} does not exist", permanent=True)
        comments = [
            *(self._email(raw) for raw in self._engagements(ticket_id, "emails", EMAIL_PROPERTIES)),
            *(self._note(raw) for raw in self._engagements(ticket_id, "notes", NOTE_PROPERTIES)),
        ]
        fresh, advanced = newer(comments, cursor)
        with self.expecting("the ticket"):
            props = ticket["properties"]
            stage = str(props.get("hs_pipeline_stage") or "")
            return TicketThread(
                ticket_id=str(ticket["id"]),
                state=self._state(stage),
                comments=fresh,
                cursor=advanced,
                queue=str(props.get("hs_pipeline") or ""),
                details={"number": str(ticket["id"]), "status": stage},
            )

    def _engagements(self, ticket_id: str, object_type: str, properties: list[str]) -> list[dict[str, Any]]:
        """The ticket's notes or e-mails: association ids (v4, paged), then batch reads of 100."""
        ids: list[str] = []
        after: str | None = None
        what = f"the ticket's {object_type} associations"
        while True:
            params: dict[str, Any] = {"limit": ASSOCIATION_PAGE}
            if after:
                params["after"] = after
            path = f"/crm/v4/objects/tickets/{ticket_id}/associations/{object_type}"
            page = self.json(self.request("GET", path, params=params))
            with self.expecting(what):
                ids += [str(row["toObjectId"]) for row in self.rows(page, "results", what)]
                after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), BATCH):
            inputs = [{"id": i} for i in ids[start : start + BATCH]]
            response = self.request(
                "POST", f"/crm/v3/objects/{object_type}/batch/read",
                json={"properties": properties, "inputs": inputs},
            )  # fmt: skip
            # 207: some ids vanished between the two calls (deleted engagements): the rest still count.
            found += self.rows(self.json(response), "results", f"the {object_type} batch read")
        return found

    def _created(self, raw: Mapping[str, Any]) -> datetime:
        return utc(datetime.fromisoformat(str(raw["createdAt"]).replace("Z", "+00:00")).astimezone(UTC))

    def _email(self, raw: Mapping[str, Any]) -> Comment:
        with self.expecting("the emails batch read"):
            props = raw["properties"]
            text = props.get("hs_email_text") or html_to_text(str(props.get("hs_email_html") or ""))
            body, hub_id = unmarked(str(text))
            return Comment(
                id=str(raw["id"]),
                created_at=self._created(raw),
                body=body,
                # Only mail the agent sends to the customer; incoming and forwarded mail is not a reply.
                public=props.get("hs_email_direction") == "EMAIL",
                author=self._sender(props.get("hs_email_headers")),
                from_hub=hub_id is not None,
            )

    def _note(self, raw: Mapping[str, Any]) -> Comment:
        with self.expecting("the notes batch read"):
            body, hub_id = unmarked(html_to_text(str(raw["properties"].get("hs_note_body") or "")))
            return Comment(
                str(raw["id"]), self._created(raw), body, public=False, from_hub=hub_id is not None
            )

    @staticmethod
    def _sender(headers: Any) -> str:
        """The sender's name from `hs_email_headers` (a JSON string); "" when absent or unreadable."""
        try:
            sender = json.loads(headers or "{}").get("from") or {}
            return " ".join(str(sender.get(k) or "") for k in ("firstName", "lastName")).strip()
        except (ValueError, AttributeError):
            return ""

    def _comments_write(self, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Log each customer message on its ticket as an incoming e-mail, unless its marker is already there.

        A ticket not found yet is transient (its own outbox message may be in flight): the whole call is
        retried, and the markers keep the e-mails already logged from doubling. A closed ticket fails that
        record for good.
        """
        result = WriteResult()
        for record in records:
            checked = comment_request(record, "HubSpot")
            if isinstance(checked, WriteOutcome):
                result.outcomes.append(checked)
                continue
            ext, fields, ticket_ext = checked
            ticket = self._ticket(ticket_ext, by_external_id=True)
            if ticket is None:
                raise ConnectorError(
                    f"HubSpot: no ticket with {self.config['id_property']} {ticket_ext} yet "
                    "(it may still be being created)",
                    permanent=False,
                )
            with self.expecting("the ticket"):
                ticket_id, stage = str(ticket["id"]), str(ticket["properties"].get("hs_pipeline_stage") or "")
            existing = [
                raw for raw in self._engagements(ticket_id, "emails", ["hs_email_text"])
                if unmarked(str(raw.get("properties", {}).get("hs_email_text") or ""))[1] == ext
            ]  # fmt: skip
            if existing:
                result.outcomes.append(WriteOutcome(ext, str(existing[0]["id"]), created=False))
                continue
            if self._state(stage) is TicketState.CLOSED:
                result.outcomes.append(
                    WriteOutcome(ext, error=f"HubSpot: ticket {ticket_id} is closed; it takes no messages")
                )
                continue
            author = str(fields.get("author") or "")
            properties = {
                "hs_timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "hs_email_direction": "INCOMING_EMAIL",
                "hs_email_status": "SENT",
                "hs_email_subject": "Chat message",
                "hs_email_text": marked(str(fields.get("body") or ""), ext),
                "hs_email_headers": json.dumps({"from": {"firstName": author, "lastName": ""}}),
            }
            kind = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": EMAIL_TO_TICKET}
            association = {"to": {"id": ticket_id}, "types": [kind]}
            answer = self.json(
                self.request(
                    "POST",
                    "/crm/v3/objects/emails",
                    json={"properties": properties, "associations": [association]},
                )
            )
            with self.expecting("the e-mail create"):
                result.outcomes.append(WriteOutcome(ext, str(answer["id"]), created=True))
        return result

    # --- erasure requests (issue 22) -------------------------------------------------------------

    def _gdpr_delete(self, object_id: str, *, id_property: str | None = None) -> bool:
        """POST /crm/v3/objects/contacts/gdpr-delete; False when HubSpot has no such contact (done before)."""
        body = {"objectId": object_id, **({"idProperty": id_property} if id_property else {})}
        try:
            self.request("POST", "/crm/v3/objects/contacts/gdpr-delete", json=body)
        except ConnectorError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _erasure_write(self, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Permanently delete the subject's contacts with HubSpot's GDPR delete: by the synced contact ids,
        then by e-mail (finds contacts the hub never synced). A contact already gone counts as erased."""
        result = WriteResult()
        for record in records:
            fields = record["fields"]
            deleted = [
                vendor_id
                for _obj, vendor_id in erasure_targets(fields, {"contacts": "contacts", "leads": "contacts"})
                if self._gdpr_delete(vendor_id)
            ]
            email = str(fields.get("lookup_email") or "")
            if email and self._gdpr_delete(email, id_property="email"):
                deleted.append("email")
            result.outcomes.append(WriteOutcome(str(record["external_id"]), ",".join(deleted)[:255]))
        return result
