"""Writes: create (POST), upsert by primary or alternate key (PATCH with `If-Match: *` = update only,
`If-None-Match: *` = create only, `return=representation` = 201/200), delete, `@odata.bind` lookups, and
the undo steps a $batch change set runs when one of its members fails."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from connectors.dynamics.simulator.schema import (
    API,
    BAD_REQUEST,
    DUPLICATE,
    ENTITY_SETS,
    GUID,
    NOT_FOUND,
    EntitySet,
)
from connectors.dynamics.simulator.store import DynamicsStore
from connectors.simulation import Row, SimRequest, SimResponse, Table, json_response, now_s


class RowEndpoints(DynamicsStore):
    """POST /{set}, PATCH /{set}({key}) and DELETE /{set}({key})."""

    def _changes(self, entity: EntitySet, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValueError("The request body must be a JSON object.")
        changes: dict[str, Any] = {}
        for name, value in body.items():
            if name.endswith("@odata.bind"):
                target = re.fullmatch(rf"/?(\w+)\(({GUID})\)", str(value))
                base = name.removesuffix("@odata.bind").rpartition("_")[0] or name
                column = f"_{base}_value"
                if target is None or column not in entity.columns:
                    raise ValueError(f"Invalid navigation property binding '{name}'.")
                changes[column] = target.group(2).lower()
                if column == "_objectid_value":  # a note's regarding record: it must exist
                    table = self.tables_by_set.get(target.group(1))
                    found = table.rows.get(changes[column]) if table is not None else None
                    if found is None or found.deleted:
                        raise LookupError(f"{target.group(1)} With Id = {target.group(2)} Does Not Exist")
                    changes["objecttypecode"] = ENTITY_SETS[target.group(1)].logical
                continue
            if (
                name not in entity.columns
                or name.startswith("_")
                or name in (entity.pk, "modifiedon", "createdon", "versionnumber")
            ):
                raise ValueError(f"Invalid property '{name}' was found in entity "
                                 f"'Microsoft.Dynamics.CRM.{entity.logical}'.")  # fmt: skip
            if name in entity.options and value is not None and value not in entity.options[name]:
                raise ValueError(f"A validation error occurred. The value {value!r} of '{name}' on record of "
                                 f"type '{entity.logical}' is outside the valid range.")  # fmt: skip
            changes[name] = value
        return changes

    def _write(
        self,
        entity: EntitySet,
        row: Row | None,
        pairs: dict[str, Any],
        changes: dict[str, Any],
        undo: list[Callable[[], None]] | None = None,
        row_id: str | None = None,
    ) -> tuple[Row, bool]:
        table = self.tables_by_set[entity.name]
        for column in entity.keys:
            value = changes.get(column, pairs.get(column))
            other = table.find(column, value) if value not in (None, "") else None
            if (
                other is not None
                and other is not row
                and not other.deleted
                and other.data.get(column) == value
            ):
                raise KeyError("A record with matching key values already exists.")
        if row is None:
            index = len(table.rows) + 1_000_000
            data = {**pairs, **changes}
            if entity.name in ("contacts", "leads"):
                data.setdefault(
                    "fullname", " ".join(filter(None, [data.get("firstname"), data.get("lastname")]))
                )
            if entity.name == "incidents":
                data.setdefault("ticketnumber", f"CAS-{index:05d}-N3W0N3")
            if entity.name == "salesorders":
                data.setdefault("ordernumber", f"ORD-{index:05d}-N3W0N3")
            if entity.name == "annotations":
                data.setdefault("_createdby_value", self.app_user_id)
                # Dataverse's server-made ids are sequential: notes of one second keep their order.
                row_id = row_id or self.sequential_id()
            new = self._add(entity.name, index, data, ts=now_s(), row_id=row_id)
            if undo is not None:
                undo.append(lambda: self._drop(table, new))
            return new, True
        before = dict(row.data)
        if undo is not None:
            undo.append(lambda: self._restore(table, row, before))
        table.update(row.id, {**changes, "versionnumber": self.next_version()})
        return row, False

    @staticmethod
    def _drop(table: Table, row: Row) -> None:
        with table.lock:
            table.rows.pop(row.id, None)
            table._keys.remove((row.ts, row.id))
            for index in table._indexes.values():
                for value, row_id in list(index.items()):
                    if row_id == row.id:
                        del index[value]

    @staticmethod
    def _restore(table: Table, row: Row, data: dict[str, Any]) -> None:
        with table.lock:
            row.data.clear()
            row.data.update(data)
            row.cache.clear()

    def _representation(self, request: SimRequest, entity: EntitySet, row: Row, created: bool) -> SimResponse:
        entity_id = f"{self.base_url}{API}/{entity.name}({row.id})"
        if "return=representation" not in request.headers.get("prefer", ""):
            return SimResponse(204, b"", headers={"OData-EntityId": entity_id, "OData-Version": "4.0"})
        select = self._select(entity, request.query)
        body = {"@odata.context": f"{self.base_url}{API}/$metadata#{entity.name}/$entity",
                **self._render(entity, row, select, False)}  # fmt: skip
        return json_response(201 if created else 200, body, **{"OData-EntityId": entity_id})

    def upsert_row(self, request: SimRequest, undo: list[Callable[[], None]] | None = None) -> SimResponse:
        """Upsert (PATCH by key): If-Match: * updates only (404), If-None-Match: * creates only (412)."""
        try:
            entity = self._entity(request)
            assert request.match is not None
            row, pairs = self._find(entity, request.match.group("key"))
            if row is None and not pairs and not re.fullmatch(GUID, unquote(request.match.group("key"))):
                raise ValueError("bad key")
            changes = self._changes(entity, request.json())
            if request.headers.get("if-match") == "*" and row is None:
                return self.error(
                    404, f"{entity.logical} With Ids = {request.match.group('key')} Do Not Exist", NOT_FOUND
                )
            if request.headers.get("if-none-match") == "*" and row is not None:
                return self.error(412, "A record with matching key values already exists.", DUPLICATE)
            key = unquote(request.match.group("key"))
            new_id = key.lower() if row is None and not pairs else None  # PATCH by a new GUID: that id
            row, created = self._write(entity, row, pairs, changes, undo, new_id)
            return self._representation(request, entity, row, created)
        except LookupError as exc:
            return self.error(404, str(exc), NOT_FOUND)
        except KeyError as exc:
            return self.error(412, str(exc.args[0]), DUPLICATE)
        except (ValueError, json.JSONDecodeError) as exc:
            return self.error(400, str(exc), BAD_REQUEST)

    def create_row(self, request: SimRequest, undo: list[Callable[[], None]] | None = None) -> SimResponse:
        try:
            entity = self._entity(request)
            changes = self._changes(entity, request.json())
            row, _ = self._write(entity, None, {}, changes, undo)
            return self._representation(request, entity, row, True)
        except LookupError as exc:
            return self.error(404, str(exc), NOT_FOUND)
        except KeyError as exc:
            return self.error(412, str(exc.args[0]), DUPLICATE)
        except (ValueError, json.JSONDecodeError) as exc:
            return self.error(400, str(exc), BAD_REQUEST)

    def delete_row(self, request: SimRequest) -> SimResponse:
        try:
            entity = self._entity(request)
            assert request.match is not None
            row, _ = self._find(entity, request.match.group("key"))
        except LookupError as exc:
            return self.error(404, str(exc), NOT_FOUND)
        except ValueError as exc:
            return self.error(400, str(exc), BAD_REQUEST)
        if row is None:
            return self.error(404, f"{entity.logical} Does Not Exist", NOT_FOUND)
        self.delete(entity.stream, row.id)
        return SimResponse(204, b"")
