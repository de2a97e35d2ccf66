"""ServiceNow Table API over plain HTTP: keyset paging on (sys_updated_on, sys_id), incidents upserted
through a correlation id (the API has no native upsert), and incident threads for the handoff: the
`comments` journal is customer-visible, `work_notes` are not (both are `sys_journal_field` rows)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import requests

from connectors.base import (
    ConfigField,
    Cursor,
    HttpConnector,
    Record,
    Stream,
    WriteOutcome,
    WriteResult,
)
from connectors.erasure import ERASURE_STREAM, erasure_targets
from connectors.errors import AuthFailed, ConnectorError, RateLimited, VendorUnavailable
from connectors.http import HttpSession, servicenow_limit
from connectors.ticket_text import html_to_text, marked, marker, newer, ticket_fields, unmarked
from connectors.tickets import COMMENT_STREAM, Comment, TicketState, TicketThread, TicketThreads

TABLES: dict[str, tuple[str, bool]] = {  # stream -> (table, writable)
    "contacts": ("customer_contact", False),
    "accounts": ("customer_account", False),
    "tickets": ("incident", True),
    "orders": ("sc_request", False),
    "articles": ("kb_knowledge", False),
}
FORMAT = "%Y-%m-%d %H:%M:%S"
SAFE_VALUE = re.compile(r"^[^\^,]*$")  # encoded-query metacharacters must not appear in ids we filter on
LOOKUP_BATCH = 100
JOURNAL = "sys_journal_field"
#: incident.state: 1 new, 2 in progress, 3 on hold are the agent's; 6 resolved; 7 closed, 8 cancelled.
STATES = {"6": TicketState.RESOLVED, "7": TicketState.CLOSED, "8": TicketState.CLOSED}
CLOSED_STATES = frozenset({"7", "8"})
_CODE = re.compile(r"^\s*\[code\](.*)\[/code\]\s*$", re.DOTALL)  # a journal entry written as HTML


class ServiceNowConnector(HttpConnector, TicketThreads):
    kind = "servicenow"
    label = "ServiceNow"
    config_schema = (
        ConfigField("instance_url", "Instance URL", required=True, url=True),
        ConfigField("auth", "Auth", default="basic", choices=("basic", "oauth")),
        ConfigField("username", "User", required=True),
        ConfigField("password", "Password", required=True, secret=True),
        ConfigField("client_id", "OAuth client id"),
        ConfigField("client_secret", "OAuth client secret", secret=True),
        ConfigField("page_size", "Rows per page", default=1000),
        ConfigField("correlation_field", "Correlation field for upserts", default="correlation_id"),
    )
    sensitive_fields = ("password", "client_secret")
    default_field_map = {
        "contacts": {"first_name": "first_name", "last_name": "last_name", "email": "email", "phone": "phone",
                     "country": "country", "locale": "preferred_language", "account_id": "account"},
        "accounts": {"name": "name", "website": "website", "country": "country", "industry": "industry"},
        "tickets": {"subject": "short_description", "description": "description", "status": "state",
                    "priority": "priority", "contact_id": "caller_id", "queue": "assignment_group"},
        "orders": {"number": "number", "status": "request_state", "amount": "price", "currency": "currency"},
        "articles": {"title": "short_description", "body": "text", "locale": "language",
                     "state": "workflow_state", "knowledge_base": "kb_knowledge_base"},
    }  # fmt: skip

    def __init__(self, config: Mapping[str, Any], *, session: HttpSession) -> None:
        super().__init__(config, session=session)
        self.base_url = str(self.config["instance_url"]).rstrip("/")
        self.uses_tokens = self.config["auth"] == "oauth"
        self._access: str | None = None
        self._refresh: str | None = None
        self._expires_at = 0.0

    # --- auth -------------------------------------------------------------------------------------

    def auth_headers(self, *, refresh: bool) -> dict[str, str]:
        if not self.uses_tokens:
            return {
                "Authorization": requests.auth._basic_auth_str(
                    self.config["username"], self.config["password"]
                )
            }
        if refresh or self._access is None or time.monotonic() >= self._expires_at:
            self._login()
        return {"Authorization": f"Bearer {self._access}"}

    def _login(self) -> None:
        """Refresh with the refresh token when we have one, else the password grant; 30 s safety margin."""
        cfg = self.config
        form = {"client_id": cfg["client_id"], "client_secret": cfg["client_secret"]}
        if self._refresh:
            form |= {"grant_type": "refresh_token", "refresh_token": self._refresh}
        else:
            form |= {"grant_type": "password", "username": cfg["username"], "password": cfg["password"]}
        response = self.session.post(self.base_url + "/oauth_token.do", data=form)
        if response.status_code >= 500:
            raise VendorUnavailable(f"ServiceNow OAuth failed with HTTP {response.status_code}")
        if response.status_code != 200:
            if self._refresh:  # refresh token revoked or expired: fall back to the password grant once
                self._refresh = None
                return self._login()
            raise AuthFailed(
                "ServiceNow OAuth refused the credentials (access_denied)", status=response.status_code
            )
        body = self.json(response)
        with self.expecting("the OAuth token request"):
            self._access, self._refresh = str(body["access_token"]), body.get("refresh_token")
            self.session.add_secret(self._access)
            self._expires_at = time.monotonic() + float(body.get("expires_in", 1800)) - 30
        if self._refresh:
            self.session.add_secret(str(self._refresh))
        return None

    def rate_limit(self, response: requests.Response) -> RateLimited | None:
        return servicenow_limit(response)

    def error_text(self, response: requests.Response) -> str:
        error = response.json()["error"]
        return f"{error['message']} ({error.get('detail') or 'no detail'}) [HTTP {response.status_code}]"

    # --- interface --------------------------------------------------------------------------------

    def check_connection(self) -> None:
        for stream in self.streams():
            if not stream.readable:
                continue
            table = stream.vendor_object
            response = self.request("GET", f"/api/now/table/{table}", params={"sysparm_limit": 1})
            self.rows(self.json(response), "result", f"the {table} table")

    def streams(self) -> list[Stream]:
        streams = [Stream(name, table, writable=writable) for name, (table, writable) in TABLES.items()]
        return [
            *streams,
            Stream(COMMENT_STREAM, JOURNAL, readable=False, writable=True),
            Stream(ERASURE_STREAM, "incident", readable=False, writable=True),
        ]

    def read(self, stream: str, *, cursor: Cursor | None = None) -> Iterator[Record]:
        table = self.stream(stream).vendor_object
        cursor = cursor or Cursor()
        fields = ",".join(dict.fromkeys(["sys_id", "sys_updated_on", *self.field_map[stream].values()]))
        order = "^ORDERBYsys_updated_on^ORDERBYsys_id"
        query = f"sys_updated_on>={cursor.value:{FORMAT}}{order}" if cursor.value else order.lstrip("^")
        while True:
            response = self.request(
                "GET",
                f"/api/now/table/{table}",
                params={"sysparm_query": query, "sysparm_limit": int(self.config["page_size"]),
                        "sysparm_fields": fields, "sysparm_exclude_reference_link": "true"},
            )  # fmt: skip
            what = f"the {table} table"
            rows = self.rows(self.json(response), "result", what)
            with self.expecting(what):
                records = [self._record(stream, raw) for raw in rows]
            for record in records:
                if not cursor.covers(record):
                    yield record
            if not rows or "next" not in response.links:
                return
            # Keyset, not offset: rows changing mid-read must not shift later pages.
            last_ts, last_id = rows[-1]["sys_updated_on"], rows[-1]["sys_id"]
            query = f"sys_updated_on>{last_ts}^NQsys_updated_on={last_ts}^sys_id>{last_id}{order}"

    def _record(self, stream: str, raw: dict[str, Any]) -> Record:
        value = raw["sys_updated_on"]
        if len(value) != 19:  # "YYYY-MM-DD HH:MM:SS" in UTC; fromisoformat alone would accept more
            raise ValueError(f"sys_updated_on is not 'YYYY-MM-DD HH:MM:SS': {value!r}")
        updated = datetime.fromisoformat(value).replace(tzinfo=UTC)
        return Record(raw["sys_id"], updated, self.to_canonical(stream, raw), raw)

    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        table = self.stream(stream, for_write=True).vendor_object
        if stream == COMMENT_STREAM:
            return self._comments_write(records)
        if stream == ERASURE_STREAM:
            return self.write("tickets", [self._erasure_ticket(r) for r in records])
        corr = str(self.config["correlation_field"])
        result = WriteResult()
        for start in range(0, len(records), LOOKUP_BATCH):
            batch = records[start : start + LOOKUP_BATCH]
            ids = [str(r["external_id"]) for r in batch]
            if not all(SAFE_VALUE.match(i) for i in ids):
                raise ConnectorError("ServiceNow: external ids must not contain '^' or ','", permanent=True)
            params = {"sysparm_query": f"{corr}IN{','.join(ids)}", "sysparm_fields": f"sys_id,{corr}"}
            what = f"the {table} lookup by {corr}"
            found = self.rows(self.json(self.request("GET", f"/api/now/table/{table}", params=params)),
                              "result", what)  # fmt: skip
            with self.expecting(what):
                existing = {str(row[corr]): str(row["sys_id"]) for row in found}
            for record, ext in zip(batch, ids, strict=True):
                body = {**self.to_vendor(stream, ticket_fields(stream, record["fields"])), corr: ext}
                if ext in existing:
                    self.request("PATCH", f"/api/now/table/{table}/{existing[ext]}", json=body)
                    result.outcomes.append(WriteOutcome(ext, existing[ext], created=False))
                else:
                    answer = self.json(self.request("POST", f"/api/now/table/{table}", json=body))
                    with self.expecting(f"the {table} insert"):
                        sys_id = str(answer["result"]["sys_id"])
                    result.outcomes.append(WriteOutcome(ext, sys_id, created=True))
        return result

    # --- ticket threads (handoff) -----------------------------------------------------------------

    def _incident(self, query: str, what: str) -> dict[str, Any] | None:
        params = {"sysparm_query": query, "sysparm_limit": 1, "sysparm_exclude_reference_link": "true",
                  "sysparm_fields": "sys_id,number,state,assignment_group"}  # fmt: skip
        rows = self.rows(
            self.json(self.request("GET", "/api/now/table/incident", params=params)), "result", what
        )
        return rows[0] if rows else None

    def ticket_find(self, external_id: str) -> str | None:
        corr = str(self.config["correlation_field"])
        if not SAFE_VALUE.match(external_id):
            raise ConnectorError("ServiceNow: external ids must not contain '^' or ','", permanent=True)
        found = self._incident(f"{corr}={external_id}", f"the incident lookup by {corr}")
        with self.expecting(f"the incident lookup by {corr}"):
            return str(found["sys_id"]) if found else None

    def ticket_thread(self, ticket_id: str, *, cursor: Cursor | None = None) -> TicketThread:
        if not re.fullmatch(r"[0-9a-f]{32}", ticket_id):
            raise ConnectorError(f"ServiceNow: {ticket_id!r} is not an incident sys_id", permanent=True)
        incident = self._incident(f"sys_id={ticket_id}", "the incident")
        if incident is None:
            raise ConnectorError(f"ServiceNow: incident {ticket_id} does not exist", permanent=True)
        query = f"element_id={ticket_id}^elementINcomments,work_notes"
        if cursor is not None and cursor.value is not None:
            query += f"^sys_created_on>={cursor.value.astimezone(UTC):{FORMAT}}"
        query += "^ORDERBYsys_created_on^ORDERBYsys_id"
        comments = [self._comment(row) for row in self._journal(query)]
        fresh, advanced = newer(comments, cursor)
        with self.expecting("the incident"):
            state = str(incident["state"])
            return TicketThread(
                ticket_id=ticket_id,
                state=STATES.get(state, TicketState.OPEN),
                comments=fresh,
                cursor=advanced,
                queue=str(incident.get("assignment_group") or ""),
                details={"number": str(incident.get("number") or ""), "status": state},
            )

    def _journal(self, query: str) -> Iterator[dict[str, Any]]:
        """Journal rows in pages; entries never change once written, so offset paging is stable."""
        params: dict[str, Any] | None = {
            "sysparm_query": query,
            "sysparm_limit": int(self.config["page_size"]),
            "sysparm_fields": "sys_id,element,value,sys_created_on,sys_created_by",
        }
        url = f"/api/now/table/{JOURNAL}"
        while True:
            response = self.request("GET", url, params=params)
            yield from self.rows(self.json(response), "result", "the journal (sys_journal_field)")
            following = response.links.get("next", {}).get("url")
            if not following:
                return
            url, params = following, None

    def _comment(self, row: Mapping[str, Any]) -> Comment:
        with self.expecting("the journal (sys_journal_field)"):
            value = str(row.get("value") or "")
            code = _CODE.match(value)
            text, hub_id = unmarked(html_to_text(code.group(1)) if code else value)
            return Comment(
                id=str(row["sys_id"]),
                created_at=self._time(str(row["sys_created_on"])),
                body=text,
                public=row["element"] == "comments",  # work_notes (and anything unknown) stay private
                author=str(row.get("sys_created_by") or ""),
                from_hub=hub_id is not None,
            )

    @staticmethod
    def _time(value: str) -> datetime:
        if len(value) != 19:
            raise ValueError(f"not 'YYYY-MM-DD HH:MM:SS': {value!r}")
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    def _comments_write(self, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Append each customer message as a `comments` journal entry, unless its marker is already there.

        A ticket not found yet is transient (its own outbox message may be in flight): the whole call is
        retried, and the markers keep the comments already posted from doubling. A closed ticket fails
        that record for good.
        """
        result = WriteResult()
        corr = str(self.config["correlation_field"])
        for record in records:
            ext = str(record["external_id"])
            fields = record.get("fields") or {}
            ticket_ext = str(fields.get("ticket") or "")
            try:
                tag = marker(ext)
            except ConnectorError as exc:
                result.outcomes.append(WriteOutcome(ext, error=f"ServiceNow: {exc}"))
                continue
            if not SAFE_VALUE.match(ticket_ext) or not ticket_ext:
                result.outcomes.append(
                    WriteOutcome(ext, error="ServiceNow: the comment names no valid ticket")
                )
                continue
            incident = self._incident(f"{corr}={ticket_ext}", f"the incident lookup by {corr}")
            if incident is None:
                raise ConnectorError(
                    f"ServiceNow: no incident with {corr} {ticket_ext} yet (it may still be being created)",
                    permanent=False,
                )
            with self.expecting(f"the incident lookup by {corr}"):
                sys_id, state = str(incident["sys_id"]), str(incident["state"])
            existing = self._marked(sys_id, tag, ext)
            if existing:
                result.outcomes.append(WriteOutcome(ext, existing, created=False))
                continue
            if state in CLOSED_STATES:
                number = incident.get("number") or sys_id
                result.outcomes.append(
                    WriteOutcome(ext, error=f"ServiceNow: incident {number} is closed; it takes no comments")
                )
                continue
            body = marked(str(fields.get("body") or ""), ext)
            self.request("PATCH", f"/api/now/table/incident/{sys_id}", json={"comments": body})
            # The Table API answers with the incident, not the journal entry: read the entry's id back.
            result.outcomes.append(WriteOutcome(ext, self._marked(sys_id, tag, ext), created=True))
        return result

    def _marked(self, sys_id: str, tag: str, external_id: str) -> str | None:
        """The id of the incident's comment carrying the hub marker of `external_id` (None: not posted).

        LIKE narrows the journal on the server; the exact marker is then checked here.
        """
        rows = self._journal(f"element_id={sys_id}^element=comments^valueLIKE{tag}")
        with self.expecting("the journal (sys_journal_field)"):
            for row in rows:
                if unmarked(str(row.get("value") or ""))[1] == external_id:
                    return str(row["sys_id"])
        return None

    # --- erasure requests (issue 22) -------------------------------------------------------------

    def _erasure_ticket(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """ServiceNow has no erasure API: a task (incident) for the instance's admin, upserted by the hub's
        id, naming only the request reference and the record ids the instance already holds."""
        fields = record["fields"]
        targets = erasure_targets(fields, {name: table for name, (table, _w) in TABLES.items()})
        listed = "\n".join(f"- {table} {sys_id}" for table, sys_id in targets) or "- (none synced by the hub)"
        description = (
            f"A data subject asked for erasure (GDPR art. 17), hub request {fields.get('request', '')}.\n"
            f"Delete these records and any other data about the person, then resolve this task:\n{listed}"
        )
        return {
            "external_id": record["external_id"],
            "fields": {"subject": f"Data subject erasure request {fields.get('request', '')}"[:160],
                       "description": description, "priority": "2"},
        }  # fmt: skip
