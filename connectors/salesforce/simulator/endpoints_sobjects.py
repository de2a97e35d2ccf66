"""The sObject endpoints: describe (global and per object), create, read, update and delete by id, read
and upsert by external id (one record or a Collections batch of up to 200), and the updated/deleted id
windows a replication client polls."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from connectors.salesforce.simulator.schema import INTEGRATION_USER, OBJECTS, REFERENCE_FIELDS, sf_time
from connectors.salesforce.simulator.store import SalesforceStore
from connectors.simulation import SimRequest, SimResponse, json_response


class SObjectEndpoints(SalesforceStore):
    """/sobjects/...: describe, CRUD by id, reads and upserts by external id, updated/deleted ids."""

    def describe_object(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj = request.match.group("obj")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        fields = [self._describe_field(obj, f) for f in sorted(self._fields_of(obj)) if "." not in f]
        _stream, prefix, _w, _r = OBJECTS[obj]
        base = f"/services/data/v59.0/sobjects/{obj}"
        return json_response(200, {
            "name": obj, "label": obj, "keyPrefix": prefix, "custom": obj.endswith(("__c", "__kav")),
            "createable": True, "updateable": True, "deletable": True, "queryable": True, "fields": fields,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        })  # fmt: skip

    @staticmethod
    def _describe_field(obj: str, name: str) -> dict[str, Any]:
        """One field of a describe: its type from its name (ids, references, e-mail, phone, booleans,
        dates, amounts; text otherwise), and what the integration user may do with it."""
        writable, required = OBJECTS[obj][2], OBJECTS[obj][3]
        reference = REFERENCE_FIELDS.get(name)
        if name == "Id":
            kind = "id"
        elif reference:
            kind = "reference"
        elif name in ("Email", "FromAddress", "ToAddress"):
            kind = "email"
        elif name == "Phone":
            kind = "phone"
        elif name.startswith("Is") or name == "Incoming":
            kind = "boolean"
        elif name in ("CreatedDate", "LastModifiedDate", "SystemModstamp", "MessageDate"):
            kind = "datetime"
        elif name == "EffectiveDate":
            kind = "date"
        elif name == "TotalAmount":
            kind = "currency"
        elif name in ("Body__c", "Description", "CommentBody", "TextBody", "HtmlBody"):
            kind = "textarea"
        else:
            kind = "string"
        return {
            "name": name, "label": name.removesuffix("__c").replace("_", " "), "type": kind,
            "length": 255 if kind in ("string", "email", "phone") else 0, "custom": name.endswith("__c"),
            "externalId": name == "Ext_Id__c", "idLookup": name in ("Id", "Ext_Id__c"),
            "unique": name == "Ext_Id__c", "createable": name in writable, "updateable": name in writable,
            "nillable": name not in required and name != "Id" and kind != "boolean",
            "filterable": True, "sortable": kind != "textarea",
            "referenceTo": [reference] if reference else [],
        }  # fmt: skip

    def describe_global(self, request: SimRequest) -> SimResponse:
        """GET /sobjects: every object with its key prefix and capabilities."""
        base = "/services/data/v59.0/sobjects"
        objects = [
            {
                "name": obj, "label": obj, "keyPrefix": prefix, "custom": obj.endswith("__kav"),
                "queryable": True, "createable": True, "updateable": True, "deletable": True,
                "retrieveable": True, "searchable": True,
                "urls": {"sobject": f"{base}/{obj}", "describe": f"{base}/{obj}/describe",
                         "rowTemplate": f"{base}/{obj}/{{ID}}"},
            }
            for obj, (_stream, prefix, _w, _r) in OBJECTS.items()
        ]  # fmt: skip
        return json_response(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects})

    # --- writes ---------------------------------------------------------------------------------

    def create(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj = request.match.group("obj")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        data = request.json() or {}
        errors = self._validate(obj, data, creating=True)
        if errors:
            return json_response(
                400,
                [
                    {"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]}
                    for e in errors
                ],
            )
        if obj == "CaseComment":
            parent = self.tables["tickets"].rows.get(str(data.get("ParentId")))
            if parent is None or parent.deleted:
                message = "Parent ID: id value of incorrect type: " + str(data.get("ParentId"))[:18]
                return self._errors(400, "FIELD_INTEGRITY_EXCEPTION", message)
            row = self.case_comment_add(
                parent.id, str(data.get("CommentBody") or ""), public=data.get("IsPublished") is True,
                user=INTEGRATION_USER,
            )  # fmt: skip
            return json_response(201, {"id": row.id, "success": True, "errors": []})
        n = self._next_id[obj]
        self._next_id[obj] += 1
        row = self._add(obj, n, dict(data), ts=int(time.time()))
        return json_response(201, {"id": row.id, "success": True, "errors": []})

    def _upsert(self, obj: str, field: str, value: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        table = self.tables[OBJECTS[obj][0]]
        data = {k: v for k, v in data.items() if k != "attributes"}
        with table.lock:
            if field == "Id":
                row = table.rows.get(value)
                if row is None:
                    return 404, {
                        "errorCode": "NOT_FOUND",
                        "message": "Provided external ID field does not exist",
                    }
            else:
                row = table.find(field, value)
            data[field] = value if field != "Id" else data.pop("Id", value)
            data.pop("Id", None)
            errors = self._validate(obj, data, creating=row is None)
            if errors:
                return 400, {"id": None, "success": False, "errors": errors}
            if row is not None:
                table.update(row.id, data)
                return 200, {"id": row.id, "success": True, "errors": [], "created": False}
            n = self._next_id[obj]
            self._next_id[obj] += 1
            new = self._add(obj, n, dict(data), ts=max(int(time.time()), 0))
            return 201, {"id": new.id, "success": True, "errors": [], "created": True}

    def upsert_one(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj, field = request.match.group("obj"), request.match.group("field")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        if field not in ("Id", "Ext_Id__c"):
            return self._errors(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field}"
            )
        status, result = self._upsert(obj, field, request.match.group("value"), request.json() or {})
        if status >= 400:
            errors = result.get("errors") or [result]
            return json_response(
                status,
                [
                    {
                        "message": e["message"],
                        "errorCode": e.get("statusCode", e.get("errorCode")),
                        "fields": e.get("fields", []),
                    }
                    for e in errors
                ],
            )
        return json_response(status, result)

    def upsert_many(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj, field = request.match.group("obj"), request.match.group("field")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        if field not in ("Id", "Ext_Id__c"):
            return self._errors(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field}"
            )
        body = request.json() or {}
        records = body.get("records") or []
        if len(records) > 200:
            return self._errors(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        results = []
        for record in records:
            if (record.get("attributes") or {}).get("type") != obj:
                results.append(
                    {
                        "id": None,
                        "success": False,
                        "errors": [
                            {
                                "statusCode": "INVALID_TYPE",
                                "message": "attributes.type must match the URL sObject",
                                "fields": [],
                            }
                        ],
                    }
                )
                continue
            value = record.get(field)
            if not value:
                results.append(
                    {
                        "id": None,
                        "success": False,
                        "errors": [
                            {
                                "statusCode": "MISSING_ARGUMENT",
                                "message": f"{field} not specified",
                                "fields": [field],
                            }
                        ],
                    }
                )
                continue
            _status, result = self._upsert(obj, field, str(value), dict(record))
            results.append(result)
        return json_response(200, results)

    def update_record(self, request: SimRequest) -> SimResponse:
        """PATCH /sobjects/{type}/{id}: 204 without a body (simple-salesforce's `sf.Contact.update`)."""
        assert request.match is not None
        obj = request.match.group("obj")
        row, denied = self._live(obj, request.match.group("id"))
        if denied is not None or row is None:
            return denied or self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        try:
            data = request.json()
        except ValueError:
            return self._errors(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        if not isinstance(data, dict):
            return self._errors(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        errors = self._validate(obj, data, creating=False)
        if errors:
            return self._record_errors(400, errors)
        self.tables[OBJECTS[obj][0]].update(row.id, data)
        return SimResponse(204, b"")

    def delete_record(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj, row_id = request.match.group("obj"), request.match.group("id")
        table = self.tables[OBJECTS[obj][0]] if obj in OBJECTS else None
        if table is None or row_id not in table.rows:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        if table.rows[row_id].deleted:
            return self._errors(404, "ENTITY_IS_DELETED", "entity is deleted")
        self.delete(OBJECTS[obj][0], row_id)
        return SimResponse(204, b"")

    # --- reads ----------------------------------------------------------------------------------

    def get_record(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        obj, row_id = request.match.group("obj"), request.match.group("id")
        row = self.tables[OBJECTS[obj][0]].rows.get(row_id) if obj in OBJECTS else None
        if row is None or row.deleted:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        return SimResponse(200, self._row_json(obj, self._get_fields(obj, request), row))

    def get_by_external_id(self, request: SimRequest) -> SimResponse:
        """GET /sobjects/{type}/{externalIdField}/{value} (simple-salesforce's `get_by_custom_id`)."""
        assert request.match is not None
        obj, field, value = (request.match.group(g) for g in ("obj", "field", "value"))
        if obj not in OBJECTS or field not in ("Id", "Ext_Id__c"):
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        table = self.tables[OBJECTS[obj][0]]
        row = table.rows.get(value) if field == "Id" else table.find(field, value)
        if row is None or row.deleted:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        return SimResponse(200, self._row_json(obj, self._get_fields(obj, request), row))

    def changed_ids(self, request: SimRequest) -> SimResponse:
        """GET /sobjects/{type}/updated|deleted/?start=&end=: ids changed in a window of the last 30 days
        (deleted: of the recycle bin's 15), covered up to `end` or now, whichever is earlier."""
        assert request.match is not None
        obj, which = request.match.group("obj"), request.match.group("which")
        if obj not in OBJECTS:
            return self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        try:
            start, end = (
                dt.datetime.fromisoformat(request.query[k].replace("Z", "+00:00")) for k in ("start", "end")
            )
        except (KeyError, ValueError):
            return self._errors(
                400, "INVALID_QUERY_PARAMETER_VALUE", "start and end must be ISO 8601 date-times"
            )
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            return self._errors(
                400, "INVALID_QUERY_PARAMETER_VALUE", "end must be after start, both with a zone"
            )
        now = int(time.time())
        if start.timestamp() < now - 30 * 86400:
            return self._errors(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago")
        covered = int(min(end.timestamp(), now))
        rows = [r for r in self.tables[OBJECTS[obj][0]].since(int(start.timestamp())) if r.ts <= covered]
        if which == "updated":
            ids = [r.id for r in rows if not r.deleted]
            return json_response(200, {"ids": ids, "latestDateCovered": sf_time(covered)})
        deleted = [{"id": r.id, "deletedDate": sf_time(r.ts)} for r in rows if r.deleted]
        earliest = sf_time(now - 15 * 86400)
        return json_response(200, {"deletedRecords": deleted, "earliestDateAvailable": earliest,
                                   "latestDateCovered": sf_time(covered)})  # fmt: skip
