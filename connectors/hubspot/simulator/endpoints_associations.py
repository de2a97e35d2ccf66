"""Associations v4: an object's associations (paged), the default and labelled links between two
objects, unlinking them, and the batch read/create/archive calls across two object types."""

from __future__ import annotations

import time
from typing import Any

from connectors.hubspot.simulator.associations import HubSpotAssociations, type_label, type_spec
from connectors.hubspot.simulator.schema import (
    ASSOCIATION_TYPES,
    LINK_TYPES,
    OBJECT_TYPE_IDS,
    TYPE_ALIASES,
    iso_ms,
)
from connectors.simulation import SimRequest, SimResponse, json_response


class AssociationEndpoints(HubSpotAssociations):
    """/crm/v4/objects/{type}/{id}/associations/... and /crm/v4/associations/{from}/{to}/batch/..."""

    def associated(self, request: SimRequest) -> SimResponse:
        """Associations v4: GET /crm/v4/objects/{type}/{id}/associations/{toType}, paged by `after`."""
        assert request.match is not None
        object_type = TYPE_ALIASES.get(request.match.group("type"), "")
        object_id, to_type = request.match.group("id"), TYPE_ALIASES.get(request.match.group("to"), "")
        if object_type not in self.by_type or to_type not in self.by_type:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        limit = int(request.query.get("limit", 500))
        if limit > 500:
            return self._error(400, "limit must be <= 500", "VALIDATION_ERROR")
        offset = int(request.query.get("after") or 0)
        linked = self._linked(object_type, object_id, to_type)
        page = linked[offset : offset + limit]
        results = [
            {"toObjectId": int(i), "associationTypes": [type_spec(n) for n in types]} for i, types in page
        ]
        body: dict[str, Any] = {"results": results}
        if offset + limit < len(linked):
            body["paging"] = {"next": {"after": str(offset + limit)}}
        return json_response(200, body)

    def _pair(self, request: SimRequest) -> tuple[str, str, str, str] | SimResponse:
        """The (type, id, to type, to id) of a v4 call, or the error for an unknown type or object."""
        assert request.match is not None
        from_type = TYPE_ALIASES.get(request.match.group("type"), "")
        to_type = TYPE_ALIASES.get(request.match.group("to"), "")
        if from_type not in self.by_type or to_type not in self.by_type:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        from_id, to_id = request.match.group("id"), request.match.group("to_id")
        for object_type, object_id in ((from_type, from_id), (to_type, to_id)):
            row = self.by_type[object_type].rows.get(object_id)
            if row is None or row.deleted:
                return self._error(
                    404, f"No {object_type.rstrip('s')} with id {object_id} exists", "OBJECT_NOT_FOUND"
                )
        return from_type, from_id, to_type, to_id

    def _labels_pair(self, from_type: str, from_id: str, to_type: str, to_id: str) -> dict[str, Any]:
        types = dict(self._linked(from_type, from_id, to_type)).get(to_id, [])
        return {"fromObjectTypeId": OBJECT_TYPE_IDS[from_type], "fromObjectId": int(from_id),
                "toObjectTypeId": OBJECT_TYPE_IDS[to_type], "toObjectId": int(to_id),
                "labels": [label for t in types if (label := type_label(t))]}  # fmt: skip

    def link_default(self, request: SimRequest) -> SimResponse:
        """PUT .../associations/default/{toType}/{toId}: the unlabeled default association."""
        pair = self._pair(request)
        if isinstance(pair, SimResponse):
            return pair
        from_type, from_id, to_type, to_id = pair
        if (from_type, to_type) not in ASSOCIATION_TYPES:
            return self._error(400, f"{from_type} cannot be associated with {to_type}", "VALIDATION_ERROR")
        type_id = ASSOCIATION_TYPES[(from_type, to_type)]
        self.link(from_type, from_id, to_type, to_id, [type_id])
        now = iso_ms(int(time.time()))
        result = {
            "from": {"id": from_id},
            "to": {"id": to_id},
            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id},
        }
        return json_response(
            200, {"status": "COMPLETE", "results": [result], "startedAt": now, "completedAt": now}
        )

    def _type_ids(self, specs: Any, from_type: str, to_type: str) -> list[int] | str:
        if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
            return "give a list of {associationCategory, associationTypeId}"
        allowed = [t for t, _l in LINK_TYPES.get((from_type, to_type), [])]
        if (from_type, to_type) in ASSOCIATION_TYPES and not allowed:
            allowed = [ASSOCIATION_TYPES[(from_type, to_type)]]
        ids = []
        for spec in specs:
            type_id = spec.get("associationTypeId")
            if spec.get("associationCategory") != "HUBSPOT_DEFINED" or type_id not in allowed:
                return f"association type {type_id} is not valid from {from_type} to {to_type}"
            ids.append(int(type_id))
        return ids

    def link_labelled(self, request: SimRequest) -> SimResponse:
        """PUT .../associations/{toType}/{toId} with [{associationCategory, associationTypeId}]."""
        pair = self._pair(request)
        if isinstance(pair, SimResponse):
            return pair
        from_type, from_id, to_type, to_id = pair
        specs = request.json_or_none()
        type_ids = self._type_ids(specs, from_type, to_type)
        if isinstance(type_ids, str):
            return self._error(400, type_ids, "VALIDATION_ERROR")
        self.link(from_type, from_id, to_type, to_id, type_ids)
        return json_response(201, self._labels_pair(from_type, from_id, to_type, to_id))

    def unlink_pair(self, request: SimRequest) -> SimResponse:
        """DELETE .../associations/{toType}/{toId}: remove every association between the two (204)."""
        pair = self._pair(request)
        if isinstance(pair, SimResponse):
            return pair
        self.unlink(*pair)
        return SimResponse(204, b"", "text/plain")

    def _batch_types(self, request: SimRequest) -> tuple[str, str] | SimResponse:
        assert request.match is not None
        from_type = TYPE_ALIASES.get(request.match.group("type"), "")
        to_type = TYPE_ALIASES.get(request.match.group("to"), "")
        if from_type not in self.by_type or to_type not in self.by_type:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        return from_type, to_type

    def associations_batch_read(self, request: SimRequest) -> SimResponse:
        """POST /crm/v4/associations/{from}/{to}/batch/read: inputs [{id}]; ids without any come back as
        207 errors (NO_ASSOCIATIONS_FOUND), as HubSpot answers."""
        types = self._batch_types(request)
        inputs, denied = self._inputs(request)
        if isinstance(types, SimResponse):
            return types
        if denied is not None:
            return denied
        if len(inputs) > 1000:
            return self._error(400, "Batch input is limited to 1000 inputs", "VALIDATION_ERROR")
        from_type, to_type = types
        started = iso_ms(int(time.time()))
        results, errors = [], []
        for item in inputs:
            from_id = str(item.get("id"))
            linked = self._linked(from_type, from_id, to_type)
            if not linked:
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                        "message": f"No {to_type} is associated with {from_type} {from_id}.",
                        "context": {"fromObjectId": [from_id]},
                        "errors": [],
                        "links": {},
                    }
                )
                continue
            results.append(
                {
                    "from": {"id": from_id},
                    "to": [
                        {"toObjectId": int(i), "associationTypes": [type_spec(n) for n in ns]}
                        for i, ns in linked
                    ],
                }
            )
        return self._batch_answer(200, results, errors, started)

    def associations_batch_create(self, request: SimRequest) -> SimResponse:
        """POST /crm/v4/associations/{from}/{to}/batch/create: inputs [{from:{id}, to:{id}, types:[...]}]."""
        types = self._batch_types(request)
        inputs, denied = self._inputs(request)
        if isinstance(types, SimResponse):
            return types
        if denied is not None:
            return denied
        from_type, to_type = types
        started = iso_ms(int(time.time()))
        pairs = []
        for item in inputs:
            from_id = str((item.get("from") or {}).get("id"))
            to_id = str((item.get("to") or {}).get("id"))
            type_ids = self._type_ids(item.get("types"), from_type, to_type)
            if isinstance(type_ids, str):
                return self._error(400, type_ids, "VALIDATION_ERROR")
            for object_type, object_id in ((from_type, from_id), (to_type, to_id)):
                row = self.by_type[object_type].rows.get(object_id)
                if row is None or row.deleted:
                    return self._error(
                        400, f"No {object_type.rstrip('s')} with id {object_id} exists", "VALIDATION_ERROR"
                    )
            pairs.append((from_id, to_id, type_ids))
        for from_id, to_id, type_ids in pairs:
            self.link(from_type, from_id, to_type, to_id, type_ids)
        results = [self._labels_pair(from_type, f, to_type, t) for f, t, _ids in pairs]
        return self._batch_answer(201, results, [], started)

    def associations_batch_archive(self, request: SimRequest) -> SimResponse:
        """POST /crm/v4/associations/{from}/{to}/batch/archive: inputs [{from:{id}, to:[{id}]}] -> 204."""
        types = self._batch_types(request)
        inputs, denied = self._inputs(request)
        if isinstance(types, SimResponse):
            return types
        if denied is not None:
            return denied
        for item in inputs:
            targets = item.get("to")
            for target in targets if isinstance(targets, list) else []:
                if isinstance(target, dict):
                    self.unlink(
                        types[0], str((item.get("from") or {}).get("id")), types[1], str(target.get("id"))
                    )
        return SimResponse(204, b"", "text/plain")
