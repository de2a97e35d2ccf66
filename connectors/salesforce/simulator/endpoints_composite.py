"""The multi-record calls: /composite (up to 25 sub-requests, `@{ref.field}` references resolved from
earlier answers) and the sObject Collections (create, update, delete, read up to 200 records of any
type), each with allOrNone: one failure rolls every table back to its snapshot."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from connectors.salesforce.simulator.schema import OBJECTS
from connectors.salesforce.simulator.store import SalesforceStore
from connectors.simulation import SimRequest, SimResponse, Table, json_response

ROLLED_BACK = "The transaction was rolled back since another operation in the same transaction failed."


class CompositeEndpoints(SalesforceStore):
    """POST /composite and /composite/sobjects (create, update, delete, read), all-or-none when asked."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tx_lock = threading.RLock()  # composite and all-or-none Collections run one at a time

    def _transaction(self) -> list[tuple[Table, Any]]:
        return [(table, table.snapshot()) for table in self.tables.values()]

    @staticmethod
    def _rollback(snapshots: list[tuple[Table, Any]]) -> None:
        for table, snap in snapshots:
            table.restore(snap)

    def _collection_body(self, request: SimRequest) -> tuple[dict[str, Any] | None, SimResponse | None]:
        body = request.json_or_none()
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            return None, self._errors(400, "JSON_PARSER_ERROR", "Expected {allOrNone, records: [...]}")
        if len(body["records"]) > 200:
            return None, self._errors(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        return body, None

    def _collection(self, records: list[Any], all_or_none: bool, one: Any) -> SimResponse:
        """Run `one(record) -> result` per record; with allOrNone, one failure rolls every record back."""
        with self._tx_lock:
            snapshots = self._transaction() if all_or_none else []
            results = [one(record) for record in records]
            if all_or_none and not all(r["success"] for r in results):
                self._rollback(snapshots)
                rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "fields": [],
                          "message": "Record rolled back because not all records were valid and the request "
                                     "was using AllOrNone header"}  # fmt: skip
                results = [
                    r if not r["success"] else {"id": None, "success": False, "errors": [rolled]}
                    for r in results
                ]
        return json_response(200, results)

    @staticmethod
    def _failed(
        code: str, message: str, fields: list[str] | None = None, row_id: str | None = None
    ) -> dict[str, Any]:
        return {
            "id": row_id,
            "success": False,
            "errors": [{"statusCode": code, "message": message, "fields": fields or []}],
        }

    def _create_one(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            return self._failed("JSON_PARSER_ERROR", "Each record must be a JSON object")
        obj = (record.get("attributes") or {}).get("type")
        if obj not in OBJECTS or obj == "CaseComment":
            return self._failed("INVALID_TYPE", f"sObject type '{obj}' is not supported.")
        data = {k: v for k, v in record.items() if k != "attributes"}
        if "Id" in data:
            return self._failed("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
        errors = self._validate(obj, data, creating=True)
        if errors:
            return {"id": None, "success": False, "errors": errors}
        with self.tables[OBJECTS[obj][0]].lock:
            n = self._next_id[obj]
            self._next_id[obj] += 1
        row = self._add(obj, n, data, ts=int(time.time()))
        return {"id": row.id, "success": True, "errors": []}

    def _update_one(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            return self._failed("JSON_PARSER_ERROR", "Each record must be a JSON object")
        obj = (record.get("attributes") or {}).get("type")
        row_id = str(record.get("Id") or "")
        if obj not in OBJECTS:
            return self._failed("INVALID_TYPE", f"sObject type '{obj}' is not supported.")
        if not row_id:
            return self._failed("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        row = self.tables[OBJECTS[obj][0]].rows.get(row_id)
        if row is None:
            return self._failed("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [], row_id)
        if row.deleted:
            return self._failed("ENTITY_IS_DELETED", "entity is deleted", [], row_id)
        data = {k: v for k, v in record.items() if k not in ("attributes", "Id")}
        errors = self._validate(obj, data, creating=False)
        if errors:
            return {"id": row_id, "success": False, "errors": errors}
        self.tables[OBJECTS[obj][0]].update(row_id, data)
        return {"id": row_id, "success": True, "errors": []}

    def _delete_one(self, row_id: Any) -> dict[str, Any]:
        for stream, *_rest in OBJECTS.values():
            row = self.tables[stream].rows.get(str(row_id))
            if row is not None:
                if row.deleted:
                    return self._failed("ENTITY_IS_DELETED", "entity is deleted", [], row.id)
                self.delete(stream, row.id)
                return {"id": row.id, "success": True, "errors": []}
        return self._failed("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [], str(row_id))

    def collection_create(self, request: SimRequest) -> SimResponse:
        """POST /composite/sobjects: create up to 200 records of any types, results in request order."""
        body, denied = self._collection_body(request)
        if body is None:
            return denied or self._errors(400, "JSON_PARSER_ERROR", "bad body")
        return self._collection(body["records"], bool(body.get("allOrNone")), self._create_one)

    def collection_update(self, request: SimRequest) -> SimResponse:
        """PATCH /composite/sobjects: update up to 200 records by Id."""
        body, denied = self._collection_body(request)
        if body is None:
            return denied or self._errors(400, "JSON_PARSER_ERROR", "bad body")
        return self._collection(body["records"], bool(body.get("allOrNone")), self._update_one)

    def collection_delete(self, request: SimRequest) -> SimResponse:
        """DELETE /composite/sobjects?ids=a,b&allOrNone=true: delete up to 200 records by Id."""
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if not ids:
            return self._errors(400, "MISSING_ARGUMENT", "ids not specified")
        if len(ids) > 200:
            return self._errors(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        return self._collection(
            ids, request.query.get("allOrNone", "false").lower() == "true", self._delete_one
        )

    def collection_get(self, request: SimRequest) -> SimResponse:
        """GET /composite/sobjects/{type}?ids=..&fields=..: the records in order, null where none."""
        assert request.match is not None
        obj = request.match.group("obj")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if not ids or not request.query.get("fields"):
            return self._errors(400, "MISSING_ARGUMENT", "ids and fields are required")
        fields = self._get_fields(obj, request)
        table = self.tables[OBJECTS[obj][0]]
        parts = []
        for row_id in ids[:2000]:
            row = table.rows.get(row_id)
            parts.append(b"null" if row is None or row.deleted else self._row_json(obj, fields, row))
        return SimResponse(200, b"[" + b",".join(parts) + b"]")

    def composite(self, request: SimRequest) -> SimResponse:
        """POST /composite: up to 25 subrequests in order, `@{referenceId.field}` resolved from earlier
        answers; with allOrNone a failure rolls everything back (PROCESSING_HALTED for the others)."""
        body = request.json_or_none()
        subs = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subs, list) or not subs:
            return self._errors(400, "JSON_PARSER_ERROR", "Expected {allOrNone, compositeRequest: [...]}")
        if len(subs) > 25:
            return self._errors(
                400, "INVALID_BATCH_REQUEST", "Composite request may contain at most 25 subrequests"
            )
        all_or_none = bool(body.get("allOrNone"))
        answers: dict[str, Any] = {}
        results: list[dict[str, Any]] = []
        with self._tx_lock:
            snapshots = self._transaction() if all_or_none else []
            failed = False
            for sub in subs:
                ref = str((sub or {}).get("referenceId") or "") if isinstance(sub, dict) else ""
                if failed and all_or_none:
                    results.append(_halted(ref, ROLLED_BACK))
                    continue
                if (
                    not isinstance(sub, dict)
                    or not ref
                    or not str(sub.get("url") or "").startswith("/services/data/")
                ):
                    results.append(
                        _halted(
                            ref, "Each subrequest needs a method, a /services/data/ url and a referenceId"
                        )
                    )
                    failed = True
                    continue
                try:
                    url = _resolve(str(sub["url"]), answers)
                    sub_body = _resolve(sub.get("body"), answers)
                except KeyError as exc:
                    results.append(
                        _halted(
                            ref, f"Invalid reference specified. No value for {exc.args[0]} found in {ref}."
                        )
                    )
                    failed = True
                    continue
                answer = self._subrequest(request, str(sub.get("method") or "GET").upper(), url, sub_body)
                payload = json.loads(answer.body) if answer.body else None
                headers = {}
                if answer.status == 201 and isinstance(payload, dict) and payload.get("id"):
                    headers["Location"] = f"{url.rstrip('/')}/{payload['id']}"
                results.append(
                    {
                        "body": payload,
                        "httpHeaders": headers,
                        "httpStatusCode": answer.status,
                        "referenceId": ref,
                    }
                )
                if answer.status >= 400:
                    failed = True
                else:
                    answers[ref] = payload
            if failed and all_or_none:
                self._rollback(snapshots)
                results = [
                    r if r["httpStatusCode"] >= 400 else _halted(r["referenceId"], ROLLED_BACK)
                    for r in results
                ]
        return json_response(200, {"compositeResponse": results})

    def _subrequest(self, request: SimRequest, method: str, url: str, body: Any) -> SimResponse:
        path, _, query = url.partition("?")
        sub = SimRequest(method, path, {k: v[0] for k, v in parse_qs(query).items()}, request.headers,
                         b"" if body is None else json.dumps(body).encode())  # fmt: skip
        found = self.find_route(method, path)
        if found is None or getattr(found[0], "__name__", "") in ("composite", "token"):  # no nesting
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        handler, sub.match = found
        return handler(sub)


def _halted(ref: str, message: str) -> dict[str, Any]:
    return {"body": [{"errorCode": "PROCESSING_HALTED", "message": message}], "httpHeaders": {},
            "httpStatusCode": 400, "referenceId": ref}  # fmt: skip


_REFERENCE = re.compile(r"@\{(?P<ref>\w+)\.(?P<path>[\w.\[\]]+)\}")


def _resolve(value: Any, answers: dict[str, Any]) -> Any:
    """Replace `@{referenceId.path}` (path: dotted keys, `[n]` indexes) with values of earlier answers."""
    if isinstance(value, dict):
        return {k: _resolve(v, answers) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, answers) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(m: re.Match[str]) -> str:
        ref = m.group("ref")
        if ref not in answers:
            raise KeyError(ref)
        found: Any = answers[ref]
        for part in re.findall(r"\w+|\[\d+\]", m.group("path")):
            try:
                found = found[int(part[1:-1])] if part.startswith("[") else found[part]
            except (KeyError, IndexError, TypeError):
                raise KeyError(m.group(0)) from None
        return str(found)

    return _REFERENCE.sub(lookup, value)
