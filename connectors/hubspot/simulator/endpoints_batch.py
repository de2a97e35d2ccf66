"""The batch calls on objects (up to 100 inputs): read (by id or idProperty), upsert by idProperty,
create (all or nothing), update and archive; partial failures come back as 207 with `errors`."""

from __future__ import annotations

import time
from typing import Any

from connectors.hubspot.simulator.associations import HubSpotAssociations
from connectors.hubspot.simulator.schema import UNIQUE, iso_ms
from connectors.simulation import SimRequest, SimResponse, json_response


class BatchEndpoints(HubSpotAssociations):
    """/crm/v3/objects/{type}/batch/{read,upsert,create,update,archive}."""

    def batch_read(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        query = request.json() or {}
        inputs = query.get("inputs") or []
        if len(inputs) > 100:
            return self._error(400, "Batch input is limited to 100 inputs", "VALIDATION_ERROR")
        props = tuple(query.get("properties") or ()) or None
        id_property = query.get("idProperty")
        if id_property and id_property not in UNIQUE[object_type]:
            return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
        if id_property:
            rows = [table.find(id_property, str(i.get("id"))) for i in inputs]
        else:
            rows = [table.rows.get(str(i.get("id"))) for i in inputs]
        results = [self._object(object_type, r, props) for r in rows if r is not None and not r.deleted]
        started = iso_ms(int(time.time()))
        body = {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": started}
        missing = [str(i.get("id")) for i, r in zip(inputs, rows, strict=True) if r is None or r.deleted]
        if missing:
            error = {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": "Could not get some objects",
                "context": {"ids": missing},
            }
            return json_response(207, {**body, "numErrors": 1, "errors": [error]})
        return json_response(200, body)

    def batch_upsert(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        inputs = (request.json() or {}).get("inputs") or []
        started = iso_ms(int(time.time()))
        if len(inputs) > 100:
            return self._error(400, "Batch input is limited to 100 inputs", "VALIDATION_ERROR")
        id_props = {i.get("idProperty") for i in inputs}
        if len(id_props) > 1 or not id_props <= set(UNIQUE[object_type]):
            return self._error(
                400, f"idProperty must be a unique property of {object_type}", "VALIDATION_ERROR"
            )
        ids = [str(i.get("id")) for i in inputs]
        if len(set(ids)) != len(ids):
            return self._error(400, "Duplicate IDs found in batch input", "VALIDATION_ERROR")
        results, errors = [], []
        with table.lock:
            for item in inputs:
                id_prop, ext = item["idProperty"], str(item["id"])
                props = {
                    k: (None if v is None else str(v)) for k, v in (item.get("properties") or {}).items()
                }
                problem = self._invalid(object_type, props)
                if problem:
                    errors.append(
                        {
                            "status": "error",
                            "category": "VALIDATION_ERROR",
                            "message": problem,
                            "context": {"ids": [ext]},
                            "errors": [],
                            "links": {},
                        }
                    )
                    continue
                props[id_prop] = ext
                row = table.find(id_prop, ext)
                row = None if row is not None and row.deleted else row  # archived: upsert creates anew
                missing = self._incomplete(object_type, props) if row is None else None
                if missing:
                    errors.append({"status": "error", "category": "VALIDATION_ERROR", "message": missing,
                                   "context": {"ids": [ext]}, "errors": [], "links": {}})  # fmt: skip
                    continue
                if row is None:
                    self._next_id += 1
                    row = self._add(object_type, self._next_id - 10_000_000, props, ts=int(time.time()))
                    new = True
                else:
                    row = table.update(row.id, props)
                    new = False
                results.append({**self._object(object_type, row, tuple(props)), "new": new})
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso_ms(int(time.time())),
        }
        if errors:
            return json_response(207, {**body, "numErrors": len(errors), "errors": errors})
        return json_response(200, body)

    def batch_create(self, request: SimRequest) -> SimResponse:
        """POST batch/create: all or nothing (one invalid input fails the batch with 400, a duplicate 409)."""
        batch_call = self._batch_call(request)
        if isinstance(batch_call, SimResponse):
            return batch_call
        object_type, table, inputs = batch_call
        started = iso_ms(int(time.time()))
        batch = [
            {k: None if v is None else str(v) for k, v in (i.get("properties") or {}).items()} for i in inputs
        ]
        with table.lock:
            for props in batch:
                problem = self._invalid(object_type, props) or self._incomplete(object_type, props)
                if problem:
                    return self._error(400, problem, "VALIDATION_ERROR")
                conflict = self._conflict(object_type, table, props, None)
                if conflict:
                    return self._error(409, conflict, "CONFLICT")
            rows = [self._insert(object_type, props) for props in batch]
        results = [
            self._object(object_type, row, tuple(props) or None)
            for row, props in zip(rows, batch, strict=True)
        ]
        return self._batch_answer(201, results, [], started)

    def batch_update(self, request: SimRequest) -> SimResponse:
        """POST batch/update: inputs [{id, properties}] (or idProperty); unknown ids come back as a 207."""
        batch_call = self._batch_call(request)
        if isinstance(batch_call, SimResponse):
            return batch_call
        object_type, table, inputs = batch_call
        started = iso_ms(int(time.time()))
        ids = [str(i.get("id")) for i in inputs]
        if len(set(ids)) != len(ids):
            return self._error(400, "Duplicate IDs found in batch input", "VALIDATION_ERROR")
        results, missing = [], []
        with table.lock:
            for item in inputs:
                props = {k: None if v is None else str(v) for k, v in (item.get("properties") or {}).items()}
                problem = self._invalid(object_type, props)
                if problem:
                    return self._error(400, problem, "VALIDATION_ERROR")
            for item in inputs:
                id_property = item.get("idProperty")
                if id_property and id_property not in UNIQUE[object_type]:
                    return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
                key = str(item.get("id"))
                row = table.find(id_property, key) if id_property else table.rows.get(key)
                if row is None or row.deleted:
                    missing.append(key)
                    continue
                props = {k: None if v is None else str(v) for k, v in (item.get("properties") or {}).items()}
                results.append(self._object(object_type, table.update(row.id, props), tuple(props) or None))
        errors = []
        if missing:
            errors = [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not find some objects",
                    "context": {"ids": missing},
                    "errors": [],
                    "links": {},
                }
            ]
        return self._batch_answer(200, results, errors, started)

    def batch_archive(self, request: SimRequest) -> SimResponse:
        """POST batch/archive: inputs [{id}] -> 204."""
        batch_call = self._batch_call(request)
        if isinstance(batch_call, SimResponse):
            return batch_call
        _object_type, table, inputs = batch_call
        for item in inputs:
            self._archive(table, str(item.get("id")))
        return SimResponse(204, b"", "text/plain")
