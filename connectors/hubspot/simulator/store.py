"""The simulated portal's data: one table per object type with the seeded multilingual rows, how an
object reads (`properties`, created/updated stamps), validation of a write (unknown, invalid, missing and
conflicting properties, ticket pipelines), id allocation, batch input and answers, and the JSON error
envelope (with a correlationId) every endpoint answers with. `HubSpotStore` is the base of every other
module's class."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from connectors.hubspot.simulator.schema import (
    DEFAULT_PIPELINE,
    ENGAGEMENTS,
    OBJECTS,
    PROPERTIES,
    REQUIRED_ON_CREATE,
    UNIQUE,
    iso_ms,
    modified_property,
)
from connectors.simulation import Row, SimRequest, SimResponse, Table, TicketSimulator, json_response, seed_ts


class HubSpotStore(TicketSimulator):
    """Tables, seed data, object rendering, validation and the error envelope of the HubSpot simulator."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._next_id = 90_000_000
        self.by_type: dict[str, Table] = {}
        self._id_lock = threading.Lock()
        #: Ticket pipelines: id -> [(stage id, label, ticketState)] in display order.
        self.pipelines: dict[str, list[tuple[str, str, str]]] = {DEFAULT_PIPELINE[0]: DEFAULT_PIPELINE[1]}
        #: GDPR deletes received, in order ({"objectId", "idProperty"}): what tests assert on.
        self.gdpr_deletes: list[dict[str, Any]] = []
        self._seed()

    # --- seed data and inserts ----------------------------------------------------------------------

    def _seed(self) -> None:
        for stream, object_type in OBJECTS.items():
            self.tables[stream] = self.by_type[object_type] = Table(object_type, unique=UNIQUE[object_type])
        for object_type in ENGAGEMENTS:
            self.tables[object_type] = self.by_type[object_type] = Table(object_type)
        seed, n = self.seed, self.counts
        for i in range(n["accounts"]):
            c = seed.company(i)
            self._add(
                "companies",
                i,
                {
                    "name": c["name"],
                    "domain": c["website"].removeprefix("https://"),
                    "country": c["country"],
                    "industry": c["industry"],
                },
            )
        for i in range(n["contacts"]):
            p = seed.person(i)
            self._add(
                "contacts",
                i,
                {
                    "email": p["email"],
                    "firstname": p["first_name"],
                    "lastname": p["last_name"],
                    "phone": p["phone"],
                    "country": p["country"],
                    "hs_language": p["locale"],
                    "company": seed.company(p["company_index"])["name"],
                },
            )
        for i in range(n["tickets"]):
            t = seed.ticket(i)
            self._add(
                "tickets",
                i,
                {
                    "subject": t["subject"],
                    "content": t["description"],
                    "hs_pipeline_stage": t["status"].lower(),
                    "hs_ticket_priority": t["priority"],
                },
            )
        for i in range(n["orders"]):
            o = seed.order(i)
            self._add(
                "orders",
                i,
                {
                    "hs_order_name": f"Order {o['number']}",
                    "hs_pipeline_stage": o["status"].lower(),
                    "hs_total_price": str(o["amount"]),
                    "hs_currency_code": o["currency"],
                },
            )

    def _add(self, object_type: str, i: int, props: dict[str, Any], ts: int | None = None) -> Row:
        row = Row(str(10_000_000 + i), seed_ts(i) if ts is None else ts, props)
        props["createdate"] = iso_ms(row.ts)
        return self.by_type[object_type].insert(row)

    def _insert(self, object_type: str, props: dict[str, Any], *, ts: int | None = None) -> Row:
        with self._id_lock:
            self._next_id += 1
            n = self._next_id - 10_000_000
        return self._add(object_type, n, props, ts=int(time.time()) if ts is None else ts)

    # --- reading objects --------------------------------------------------------------------------

    def _table(self, request: SimRequest) -> tuple[str, Table] | None:
        assert request.match is not None
        object_type = request.match.group("type")
        table = self.by_type.get(object_type)
        return (object_type, table) if table is not None else None

    def _object(self, object_type: str, row: Row, props: tuple[str, ...] | None) -> dict[str, Any]:
        values = dict(row.data)
        values[modified_property(object_type)] = iso_ms(row.ts)
        values["hs_object_id"] = row.id
        wanted = props if props else ("createdate", "hs_object_id", modified_property(object_type))
        return {
            "id": row.id,
            "properties": {p: values.get(p) for p in wanted},
            "createdAt": row.data["createdate"],
            "updatedAt": iso_ms(row.ts),
            "archived": row.deleted,
        }

    def _json(self, object_type: str, row: Row, props: tuple[str, ...] | None) -> bytes:
        cached = row.cache.get(props)
        if cached is None:
            cached = row.cache[props] = json.dumps(
                self._object(object_type, row, props), ensure_ascii=False
            ).encode()
        return cached

    # --- validation, batches and errors -------------------------------------------------------------

    def _invalid(self, object_type: str, props: dict[str, Any]) -> str | None:
        unknown = [p for p in props if p not in PROPERTIES[object_type]]
        if unknown:
            return f'Property "{unknown[0]}" does not exist'
        email = props.get("email")
        if email and "@" not in str(email):
            return f'Property values were not valid: invalid email address "{email}"'
        return None

    def _incomplete(self, object_type: str, props: dict[str, Any]) -> str | None:
        """Why a new object cannot be created (required properties, a ticket's pipeline and stage)."""
        missing = [p for p in REQUIRED_ON_CREATE.get(object_type, ()) if not props.get(p)]
        if missing:
            label = object_type.rstrip("s").upper()
            return (
                f"Cannot create object with type: {label}. "
                f"The following required properties were missing: {missing}"
            )
        if object_type == "tickets":
            pipeline = props["hs_pipeline"] = props.get("hs_pipeline") or DEFAULT_PIPELINE[0]
            stages = [s for s, _label, _state in self.pipelines.get(pipeline, [])]
            if not stages:
                return f"{pipeline} is not a valid pipeline ID"
            stage = props["hs_pipeline_stage"]
            if stage not in stages:
                return f"{stage} is not a valid pipeline stage ID for pipeline {pipeline}"
        return None

    def _conflict(
        self, object_type: str, table: Table, props: dict[str, Any], row_id: str | None
    ) -> str | None:
        for name in UNIQUE[object_type]:
            existing = table.find(name, props.get(name)) if props.get(name) else None
            if existing is not None and existing.id != row_id and not existing.deleted:
                label = object_type.rstrip("s").capitalize()
                return f"{label} already exists. Existing ID: {existing.id}"
        return None

    def _body(self, request: SimRequest) -> dict[str, Any] | None:
        body = request.json_or_none()
        return body if isinstance(body, dict) else None

    def _inputs(self, request: SimRequest) -> tuple[list[dict[str, Any]], SimResponse | None]:
        body = self._body(request)
        inputs = body.get("inputs") if body is not None else None
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            return [], self._error(400, 'Invalid input JSON: expected {"inputs": [...]}', "VALIDATION_ERROR")
        if len(inputs) > 100:
            return [], self._error(400, "Batch input is limited to 100 inputs", "VALIDATION_ERROR")
        return inputs, None

    def _batch_call(self, request: SimRequest) -> tuple[str, Table, list[dict[str, Any]]] | SimResponse:
        """The object type, table and inputs of a batch call on objects, or the error HubSpot answers."""
        found = self._table(request)
        inputs, denied = self._inputs(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        return denied if denied is not None else (*found, inputs)

    def _batch_answer(
        self, status: int, results: list[dict[str, Any]], errors: list[dict[str, Any]], started: str
    ) -> SimResponse:
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                                "completedAt": iso_ms(int(time.time()))}  # fmt: skip
        if errors:
            return json_response(207, {**body, "numErrors": len(errors), "errors": errors})
        return json_response(status, body)

    @staticmethod
    def _archive(table: Table, row_id: str) -> None:
        with table.lock:
            row = table.rows.get(row_id)
            if row is not None and not row.deleted:
                row.deleted = True
                table.update(row.id, {})

    def _error(self, status: int, message: str, category: str, **extra: Any) -> SimResponse:
        body = {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        }
        return json_response(status, {**body, **extra})

    def error(self, status: int, message: str) -> SimResponse:
        return self._error(status, message, "OBJECT_NOT_FOUND" if status == 404 else "INTERNAL_ERROR")
