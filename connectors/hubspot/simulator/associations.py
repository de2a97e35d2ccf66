"""The association graph between objects (contacts, companies, tickets, notes, e-mails): linking with
HubSpot-defined type ids and their inverses, unlinking, what one object is linked to, the seeded
contact-company links, and the v3 `associations=` part of an object read. The v4 endpoints over it are in
endpoints_associations.py."""

from __future__ import annotations

import json
from typing import Any

from connectors.hubspot.simulator.schema import ASSOCIATION_TYPES, LINK_TYPES, TYPE_ALIASES
from connectors.hubspot.simulator.store import HubSpotStore
from connectors.simulation import Row, SimRequest


class HubSpotAssociations(HubSpotStore):
    """Associations between objects, both directions, with their type ids."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: (object type, id) -> associated (object type, id, association type id), both directions.
        self.associations: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        self._seed_links()

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        """Associate two objects with HubSpot's default type ids, both directions."""
        with self._id_lock:
            self.associations.setdefault((from_type, from_id), []).append(
                (to_type, to_id, ASSOCIATION_TYPES[(from_type, to_type)])
            )
            self.associations.setdefault((to_type, to_id), []).append(
                (from_type, from_id, ASSOCIATION_TYPES[(to_type, from_type)])
            )

    def link(self, from_type: str, from_id: str, to_type: str, to_id: str, type_ids: list[int]) -> None:
        """Associate two objects with these type ids (each with its inverse); ValueError for a type id
        HubSpot does not define for the pair."""
        forward = [t for t, _label in LINK_TYPES.get((from_type, to_type), [])] or [
            ASSOCIATION_TYPES[(from_type, to_type)]
        ]
        backward = [t for t, _label in LINK_TYPES.get((to_type, from_type), [])] or [
            ASSOCIATION_TYPES[(to_type, from_type)]
        ]
        with self._id_lock:
            for type_id in type_ids:
                if type_id not in forward:
                    raise ValueError(f"association type {type_id} is not valid from {from_type} to {to_type}")
                inverse = backward[forward.index(type_id)]
                there = self.associations.setdefault((from_type, from_id), [])
                if (to_type, to_id, type_id) not in there:
                    there.append((to_type, to_id, type_id))
                back = self.associations.setdefault((to_type, to_id), [])
                if (from_type, from_id, inverse) not in back:
                    back.append((from_type, from_id, inverse))

    def unlink(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        """Remove every association between two objects, both directions."""
        with self._id_lock:
            for (a, a_id), (b, b_id) in (
                ((from_type, from_id), (to_type, to_id)),
                ((to_type, to_id), (from_type, from_id)),
            ):
                links = self.associations.get((a, a_id), [])
                links[:] = [x for x in links if (x[0], x[1]) != (b, b_id)]

    def _linked(self, object_type: str, object_id: str, to_type: str) -> list[tuple[str, list[int]]]:
        """(to id, [type ids]) for the objects of `to_type` associated with one object, in link order."""
        grouped: dict[str, list[int]] = {}
        for t, i, n in self.associations.get((object_type, object_id), []):
            if t == to_type:
                grouped.setdefault(i, []).append(n)
        return list(grouped.items())

    def _wanted_links(self, request: SimRequest) -> list[str]:
        """The object types of a read's `associations=` parameter (comma-separated or repeated)."""
        names = [TYPE_ALIASES.get(n.strip(), "") for n in request.query.get("associations", "").split(",")]
        return [n for n in names if n in self.by_type]

    def _json_linked(
        self, object_type: str, row: Row, props: tuple[str, ...] | None, linked: list[str]
    ) -> bytes:
        """An object, with its associations (v3 shape: {"companies": {"results": [{id, type}]}}) if asked."""
        if not linked:
            return self._json(object_type, row, props)
        payload = self._object(object_type, row, props)
        found: dict[str, Any] = {}
        for to_type in linked:
            results = [
                {"id": to_id, "type": _type_name(object_type, to_type, type_id)}
                for to_id, type_ids in self._linked(object_type, row.id, to_type)
                for type_id in type_ids
            ]
            if results:
                found[to_type] = {"results": results}
        if found:  # HubSpot leaves the key out when there are none
            payload["associations"] = found
        return json.dumps(payload, ensure_ascii=False).encode()

    def _seed_links(self) -> None:
        """Each seeded contact works at one seeded company (primary and unlabeled, as HubSpot shows it)."""
        companies = self.counts["accounts"]
        if not companies:
            return
        for i in range(self.counts["contacts"]):
            company = str(10_000_000 + self.seed.person(i)["company_index"] % companies)
            self.link("contacts", str(10_000_000 + i), "companies", company, [279, 1])


def type_label(type_id: int) -> str | None:
    """The label of a HubSpot-defined association type ("Primary"), None for an unlabeled one."""
    return next((label for types in LINK_TYPES.values() for t, label in types if t == type_id), None)


def type_spec(type_id: int) -> dict[str, Any]:
    """An association type as v4 answers name it: {category, typeId, label}."""
    return {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": type_label(type_id)}


def _type_name(from_type: str, to_type: str, type_id: int) -> str:
    """v3's association type names: contact_to_company (primary), contact_to_company_unlabeled, ..."""
    singular = {"companies": "company"}
    base = f"{singular.get(from_type, from_type.rstrip('s'))}_to_{singular.get(to_type, to_type.rstrip('s'))}"
    types = LINK_TYPES.get((from_type, to_type), [])
    return base + "_unlabeled" if len(types) > 1 and type_id == types[0][0] else base
