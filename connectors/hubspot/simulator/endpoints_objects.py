"""One object at a time: the properties API, list pages (`after`, `archived`, `associations=`), read by
id or idProperty, create (with associations), update, archive, and the GDPR delete of a contact."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from connectors.hubspot.simulator.associations import HubSpotAssociations
from connectors.hubspot.simulator.schema import ASSOCIATION_TYPES, PROPERTIES, UNIQUE, modified_property
from connectors.simulation import SimRequest, SimResponse, json_response


class ObjectEndpoints(HubSpotAssociations):
    """/crm/v3/properties and /crm/v3/objects/{type}[/{id}] (and gdpr-delete)."""

    @staticmethod
    def _property(object_type: str, name: str, unique: bool) -> dict[str, Any]:
        """One property as /crm/v3/properties answers it (the official client needs every field)."""
        kind = (
            "datetime"
            if name in ("createdate", "lastmodifieddate", "hs_lastmodifieddate", "hs_timestamp")
            else "string"
        )
        return {
            "name": name, "label": name.replace("_", " ").capitalize(), "type": kind,
            "fieldType": "date" if kind == "datetime" else "text", "description": "",
            "groupName": f"{object_type.rstrip('s')}information", "options": [], "displayOrder": -1,
            "calculated": False, "externalOptions": False, "hasUniqueValue": unique, "hidden": False,
            "formField": kind == "string", "archived": False,
            "modificationMetadata": {"archivable": True, "readOnlyDefinition": True, "readOnlyValue": False},
        }  # fmt: skip

    def property_one(self, request: SimRequest) -> SimResponse:
        """GET /crm/v3/properties/{type}/{name}."""
        found = self._table(request)
        assert request.match is not None
        name = request.match.group("name")
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        names = (*PROPERTIES[found[0]], "createdate", "hs_object_id", modified_property(found[0]))
        if name not in names:
            return self._error(404, f"Property {name} does not exist", "OBJECT_NOT_FOUND")
        return json_response(200, self._property(found[0], name, name in UNIQUE[found[0]]))

    def properties(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type from: x", "VALIDATION_ERROR")
        names = (*PROPERTIES[found[0]], "createdate", "hs_object_id", modified_property(found[0]))
        unique = UNIQUE[found[0]]
        return json_response(200, {"results": [self._property(found[0], n, n in unique) for n in names]})

    def list_page(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        limit = int(request.query.get("limit", 10))
        if limit > 100:
            return self._error(400, "limit must be <= 100", "VALIDATION_ERROR")
        after = request.query.get("after", "")
        props = tuple(p for p in request.query.get("properties", "").split(",") if p) or None
        archived = request.query.get("archived", "false").lower() == "true"  # the client sends "True"
        with table.lock:
            ids = sorted(k for k, r in table.rows.items() if r.deleted == archived and k > after)
        page = ids[:limit]
        linked = self._wanted_links(request)
        body = b'{"results":[' + b",".join(
            self._json_linked(object_type, table.rows[i], props, linked) for i in page
        )
        body += b"]"
        if len(ids) > limit:
            link = f"{self.base_url}{request.path}?limit={limit}&after={page[-1]}"
            body += b',"paging":' + json.dumps({"next": {"after": page[-1], "link": link}}).encode()
        return SimResponse(200, body + b"}")

    def get_object(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        assert request.match is not None
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        value, id_property = unquote(request.match.group("id")), request.query.get("idProperty")
        if id_property:
            if id_property not in UNIQUE[object_type]:
                return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
            row = table.find(id_property, value)
        else:
            row = table.rows.get(value)
        archived = request.query.get("archived", "false").lower() == "true"
        if row is None or row.deleted != archived:
            return self._error(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
        props = tuple(p for p in request.query.get("properties", "").split(",") if p) or None
        return SimResponse(200, self._json_linked(object_type, row, props, self._wanted_links(request)))

    def create(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        props = {k: str(v) for k, v in ((request.json() or {}).get("properties") or {}).items()}
        problem = self._invalid(object_type, props) or self._incomplete(object_type, props)
        if problem:
            return self._error(400, problem, "VALIDATION_ERROR")
        conflict = self._conflict(object_type, table, props, None)  # an archived object frees its values
        if conflict:
            return self._error(409, conflict, "CONFLICT")
        targets = []
        for assoc in (request.json() or {}).get("associations") or []:
            to_id = str((assoc.get("to") or {}).get("id"))
            types = [t.get("associationTypeId") for t in assoc.get("types") or []]
            to_type = next(
                (b for (a, b), n in ASSOCIATION_TYPES.items() if a == object_type and n in types), None
            )
            if to_type is None or to_id not in self.by_type[to_type].rows:
                return self._error(
                    400, f"association to {to_id} with types {types} is not valid", "VALIDATION_ERROR"
                )
            targets.append((to_type, to_id))
        row = self._insert(object_type, props)
        for to_type, to_id in targets:
            self.associate(object_type, row.id, to_type, to_id)
        return json_response(201, self._object(object_type, row, tuple(props)))

    def update_object(self, request: SimRequest) -> SimResponse:
        """PATCH /crm/v3/objects/{type}/{id} (or by `idProperty`): the updated object."""
        found, body = self._table(request), self._body(request)
        assert request.match is not None
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        if body is None or not isinstance(body.get("properties"), dict):
            return self._error(400, 'Invalid input JSON: expected {"properties": {...}}', "VALIDATION_ERROR")
        id_property = request.query.get("idProperty")
        if id_property and id_property not in UNIQUE[object_type]:
            return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
        value = unquote(request.match.group("id"))  # an e-mail address as the id arrives percent-encoded
        row = table.find(id_property, value) if id_property else table.rows.get(value)
        if row is None or row.deleted:
            return self._error(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
        props = {k: None if v is None else str(v) for k, v in body["properties"].items()}
        problem = self._invalid(object_type, props)
        if problem:
            return self._error(400, problem, "VALIDATION_ERROR")
        conflict = self._conflict(object_type, table, props, row.id)
        if conflict:
            return self._error(409, conflict, "CONFLICT")
        row = table.update(row.id, props)
        return json_response(200, self._object(object_type, row, tuple(props) or None))

    def archive_object(self, request: SimRequest) -> SimResponse:
        """DELETE /crm/v3/objects/{type}/{id}: archive (204, also for an id already archived or unknown)."""
        found = self._table(request)
        assert request.match is not None
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        self._archive(found[1], request.match.group("id"))
        return SimResponse(204, b"", "text/plain")

    def gdpr_delete(self, request: SimRequest) -> SimResponse:
        """Permanently delete a contact (HubSpot's GDPR delete): by id, or by e-mail with idProperty=email.

        204 on success; 404 when no such contact exists; the row is gone from lists, search and reads.
        """
        body = request.json() or {}
        object_id, id_property = str(body.get("objectId") or ""), body.get("idProperty")
        if not object_id:
            return self._error(400, "objectId is required", "VALIDATION_ERROR")
        table = self.by_type["contacts"]
        if id_property not in (None, "", "email", "hs_object_id"):
            return self._error(400, f"{id_property} is not a unique property", "VALIDATION_ERROR")
        with table.lock:
            if id_property == "email":
                row = next(
                    (
                        r
                        for r in table.rows.values()
                        if str(r.data.get("email") or "").lower() == object_id.lower()
                    ),
                    None,
                )
            else:
                row = table.rows.get(object_id)
            if row is None:
                return self._error(
                    404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND"
                )
            self.gdpr_deletes.append({"objectId": object_id, "idProperty": id_property})
            table.rows.pop(row.id)
            table._keys.remove((row.ts, row.id))
        return SimResponse(204, b"")
