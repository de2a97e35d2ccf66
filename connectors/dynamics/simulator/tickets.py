"""The agent's side of a case (human handoff): cases by id or ticket number, the agent helper (a note,
public with Power Pages' `*WEB*` prefix or internal, and/or a state), the case's notes, and queues with
the AddToQueue action that routes a case. Dataverse sends no webhook: the hub polls the notes."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import unquote

from connectors.dynamics.simulator.schema import (
    AGENT_STATES,
    API,
    BAD_REQUEST,
    ENTITY_SETS,
    NOT_FOUND,
    WEB_PREFIX,
    created_s,
)
from connectors.dynamics.simulator.store import DynamicsStore
from connectors.simulation import Row, SimRequest, SimResponse, json_response, now_s


class CaseActivity(DynamicsStore):
    """Cases, the agent helper, notes and queues."""

    def incident(self, ticket: str) -> Row:
        """A case by id or ticket number; KeyError when there is none."""
        table = self.tables_by_set["incidents"]
        row = table.rows.get(ticket.lower()) or table.find("ticketnumber", ticket)
        if row is None:
            row = next((r for r in table.rows.values() if r.data.get("ticketnumber") == ticket), None)
        if row is None or row.deleted:
            raise KeyError(ticket)
        return row

    def agent(
        self, *, ticket: str, body: str = "", public: bool = True, state: str | None = None, author: str = ""
    ) -> dict[str, Any]:
        """A support agent on a case: a note (public = with Power Pages' `*WEB*` prefix, which shows it to
        the customer; otherwise an internal note) and/or a state ("open", "resolved", "closed"). Dataverse
        sends no webhook the hub reads: the handoff's poll finds the note."""
        self.agent_check(body, state)
        if state is not None and state not in AGENT_STATES:
            raise ValueError(f"unknown state {state!r}: open, resolved or closed")
        row = self.incident(ticket)
        note = self.note_add(row.id, body, public=public, author=author) if body.strip() else None
        if state is not None:
            statecode, statuscode = AGENT_STATES[state]
            self.tables_by_set["incidents"].update(
                row.id,
                {"statecode": statecode, "statuscode": statuscode, "versionnumber": self.next_version()},
                ts=now_s(),
            )
        return {"ticket": row.id, "number": row.data.get("ticketnumber"),
                "comment_id": note.id if note else None, "state": row.data.get("statecode"),
                "webhook": None}  # fmt: skip

    def note_add(
        self, incident_id: str, body: str, *, public: bool = True, author: str = "", ts: int | None = None
    ) -> Row:
        """A note on a case by an agent (`author`), at `ts` (now when None)."""
        name = author or "Beth Anglin"
        user = str(uuid.uuid5(uuid.NAMESPACE_URL, f"dynamics:systemuser:{name}"))
        self.users[user] = name
        return self._add("annotations", 0, {
            "subject": "Reply to the customer" if public else "Internal note",
            "notetext": f"{WEB_PREFIX} {body}" if public else body,
            "objecttypecode": "incident", "_objectid_value": incident_id, "_createdby_value": user,
        }, ts=now_s() if ts is None else ts, row_id=self.sequential_id())  # fmt: skip

    def notes(self, incident_id: str) -> list[Row]:
        """The case's notes, oldest first."""
        table = self.tables_by_set["annotations"]
        found = [
            r for r in table.rows.values() if r.data.get("_objectid_value") == incident_id and not r.deleted
        ]
        return sorted(found, key=lambda r: (created_s(r), r.id))

    def queue_of(self, incident_id: str) -> str | None:
        """The name of the queue a case is in; None when in none."""
        for item in self.tables_by_set["queueitems"].rows.values():
            if item.data.get("_objectid_value") == incident_id and not item.deleted:
                return str(self.tables_by_set["queues"].rows[item.data["_queueid_value"]].data["name"])
        return None

    def add_to_queue(self, request: SimRequest) -> SimResponse:
        """The AddToQueue action: the Target record into this queue, moved out of any other one."""
        assert request.match is not None
        queue_id = unquote(request.match.group("key")).lower()
        queue = self.tables_by_set["queues"].rows.get(queue_id)
        if queue is None or queue.deleted:
            return self.error(404, f"queue With Id = {queue_id[:40]} Does Not Exist", NOT_FOUND)
        try:
            body = request.json()
            target = body["Target"] if isinstance(body, dict) else None
            if not isinstance(target, dict):
                raise ValueError("The parameter 'Target' is missing.")
            kind = (
                str(target.get("@odata.type", "")).removeprefix("#").removeprefix("Microsoft.Dynamics.CRM.")
            )
            entity = next((e for e in ENTITY_SETS.values() if e.logical == kind), None)
            if entity is None or entity.name not in ("incidents",):
                raise ValueError(f"AddToQueue: '{kind[:40]}' is not a queue-enabled entity.")
            record = str(target.get(entity.pk) or "").lower()
            row = self.tables_by_set[entity.name].rows.get(record)
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            return self.error(400, str(exc).strip("'\""), BAD_REQUEST)
        if row is None or row.deleted:
            return self.error(404, f"{entity.logical} With Id = {record[:40]} Does Not Exist", NOT_FOUND)
        items = self.tables_by_set["queueitems"]
        item = next((r for r in items.rows.values()
                     if r.data.get("_objectid_value") == row.id and not r.deleted), None)  # fmt: skip
        if item is None:
            item = self._add("queueitems", 0, {
                "title": row.data.get("title"), "objecttypecode": entity.logical, "_objectid_value": row.id,
                "_queueid_value": queue.id,
            }, ts=now_s(), row_id=self.sequential_id())  # fmt: skip
        else:
            items.update(
                item.id, {"_queueid_value": queue.id, "versionnumber": self.next_version()}, ts=now_s()
            )
        return json_response(200, {
            "@odata.context": f"{self.base_url}{API}/$metadata#Microsoft.Dynamics.CRM.AddToQueueResponse",
            "QueueItemId": item.id,
        })  # fmt: skip
