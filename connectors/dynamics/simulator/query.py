"""Reads: GET an entity set with `$select`, the `$filter` subset (`eq ne gt ge lt le` joined by `and`),
`$orderby` on modifiedon/createdon, `$top`, server-driven paging (`Prefer: odata.maxpagesize`, skip-token
cookies in `@odata.nextLink`) and change tracking (`odata.track-changes` → `@odata.deltaLink`, deltas with
`$deletedEntity` entries, 410 for an expired token); GET one row by GUID or alternate key."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

from connectors.dynamics.simulator.schema import (
    API,
    BAD_REQUEST,
    DELTA_EXPIRED,
    GUID,
    NOT_FOUND,
    EntitySet,
    created_s,
)
from connectors.dynamics.simulator.store import DynamicsStore
from connectors.simulation import Row, SimRequest, SimResponse, json_response

_TERM = re.compile(r"^\s*(\w+)\s+(eq|ne|gt|ge|lt|le)\s+('(?:[^']|'')*'|[\w:.+-]+)\s*$")
_COOKIE = re.compile(r'<cookie pagenumber="(\d+)" last="([^"]*)" v="(\d+)" delta="(-?\d+)" />')


class QueryEndpoints(DynamicsStore):
    """GET /api/data/v9.2/{set} (filtered, paged, tracked) and GET /{set}({key})."""

    def list_rows(self, request: SimRequest) -> SimResponse:
        try:
            entity = self._entity(request)
            select = self._select(entity, request.query)
            prefs = self._prefer(request)
            query = request.query
            if "$deltatoken" in query or "odata.track-changes" in prefs:
                if {"$filter", "$orderby", "$top", "$expand"} & set(query):
                    return self.error(400, "The query parameter $filter, $orderby, $top or $expand is not "
                                      "supported with change tracking.", BAD_REQUEST)  # fmt: skip
                if entity.name in self.untracked:
                    prefs.pop("odata.track-changes", None)
                    if "$deltatoken" in query:
                        return self.error(400, f"Change tracking is not enabled for {entity.logical}.")
                else:
                    return self._tracked(request, entity, select, prefs)
            return self._untracked(request, entity, select, prefs)
        except LookupError as exc:
            return self.error(404, str(exc), NOT_FOUND)
        except ValueError as exc:
            return self.error(400, str(exc), BAD_REQUEST)

    def _filter(self, entity: EntitySet, text: str) -> Callable[[Row], bool]:
        tests: list[Callable[[Row], bool]] = []
        for term in re.split(r"\s+and\s+", text.strip()) if text.strip() else []:
            match = _TERM.match(term)
            if not match or match.group(1) not in entity.columns:
                raise ValueError(f"Syntax error or unsupported property in $filter: '{term[:80]}'")
            column, op, raw = match.groups()
            value: Any
            if raw.startswith("'"):
                value = raw[1:-1].replace("''", "'")
            elif re.fullmatch(GUID, raw):  # a lookup or key compared with a bare GUID literal
                value = raw.lower()
            elif column in ("modifiedon", "createdon"):
                value = int(dt.datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp())
            elif raw == "null":
                value = None
            else:
                value = float(raw) if "." in raw else int(raw)
            tests.append(self._compare(entity, column, op, value))
        return lambda row: all(t(row) for t in tests)

    @staticmethod
    def _compare(entity: EntitySet, column: str, op: str, value: Any) -> Callable[[Row], bool]:
        def get(row: Row) -> Any:
            if column == "createdon":
                return created_s(row)
            return (
                row.ts if column == "modifiedon" else row.id if column == entity.pk else row.data.get(column)
            )

        ops: dict[str, Callable[[Any, Any], bool]] = {
            "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
            "gt": lambda a, b: a is not None and a > b, "ge": lambda a, b: a is not None and a >= b,
            "lt": lambda a, b: a is not None and a < b, "le": lambda a, b: a is not None and a <= b,
        }  # fmt: skip
        compare = ops[op]
        return lambda row: compare(get(row), value)

    def _page_size(self, prefs: dict[str, str], query: dict[str, str]) -> int:
        size = int(prefs.get("odata.maxpagesize") or 5000)
        if "$top" in query:
            size = min(size, int(query["$top"]))
        return max(1, min(size, 5000))

    def _link(self, entity: EntitySet, query: dict[str, str], **params: str) -> str:
        keep = {k: v for k, v in query.items() if k in ("$select", "$filter", "$orderby")}
        parts = [f"{k}={quote(v, safe=',')}" for k, v in {**keep, **params}.items()]
        return f"{self.base_url}{API}/{entity.name}?" + "&".join(parts)

    def _untracked(self, request: SimRequest, entity: EntitySet, select: list[str] | None,
                   prefs: dict[str, str]) -> SimResponse:  # fmt: skip
        query = request.query
        table = self.tables_by_set[entity.name]
        keep = self._filter(entity, query.get("$filter", ""))
        order = query.get("$orderby", "").replace(" asc", "").replace(" ", "")
        if order not in ("", "modifiedon", f"modifiedon,{entity.pk}", entity.pk, "createdon",
                         f"createdon,{entity.pk}"):  # fmt: skip
            raise ValueError(f"$orderby '{order}' is not supported by the simulator")

        def position(r: Row) -> tuple[int, str]:
            if order == entity.pk:
                return 0, r.id
            return (created_s(r) if order.startswith("createdon") else r.ts), r.id

        cookie = _COOKIE.match(unquote(query.get("$skiptoken", "")))
        page_no = int(cookie.group(1)) if cookie else 1
        rows = sorted((r for r in table.since() if not r.deleted), key=position)
        if cookie:
            ts_s, _, last_id = cookie.group(2).partition("|")
            last = (int(ts_s), last_id)
            rows = [r for r in rows if position(r) > last]
        rows = [r for r in rows if keep(r)]
        size = self._page_size(prefs, query)
        page, more = rows[:size], len(rows) > size and "$top" not in query
        annotated = self._annotated(prefs)
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}{API}/$metadata#{entity.name}",
            "value": [self._render(entity, r, select, annotated) for r in page],
        }
        if more:
            last_key = "|".join(map(str, position(page[-1])))
            cookie_text = f'<cookie pagenumber="{page_no + 1}" last="{last_key}" v="0" delta="-1" />'
            body["@odata.nextLink"] = self._link(entity, query, **{"$skiptoken": cookie_text})
        headers = {"OData-Version": "4.0"}
        if "odata.maxpagesize" in prefs:
            headers["Preference-Applied"] = f"odata.maxpagesize={size}"
        return json_response(200, body, **headers)

    def _tracked(self, request: SimRequest, entity: EntitySet, select: list[str] | None,
                 prefs: dict[str, str]) -> SimResponse:  # fmt: skip
        """Change tracking: an initial read of every row, or the changes since a delta token; paged the same
        way, ending in a delta link that covers everything up to the version the read started at."""
        query = request.query
        table = self.tables_by_set[entity.name]
        cookie = _COOKIE.match(unquote(query.get("$skiptoken", "")))
        if cookie:
            page_no, start_version, since = int(cookie.group(1)), int(cookie.group(3)), int(cookie.group(4))
            last = cookie.group(2)
        else:
            page_no, start_version, last = 1, self._version, ""
            since = -1
            if "$deltatoken" in query:
                token = unquote(query["$deltatoken"]).partition("!")[0]
                if not token.isdigit():
                    return self.error(400, "The delta token is malformed.", BAD_REQUEST)
                since = int(token)
                if since < self.delta_floor:
                    return self.error(410, "Version stamp associated with the client has expired. Please "
                                      "perform a full sync.", DELTA_EXPIRED)  # fmt: skip
        if since < 0:  # initial read: current rows, oldest change first
            rows = [r for r in table.since() if not r.deleted and r.data["versionnumber"] <= start_version]
            keyed = [((r.ts, r.id), r) for r in rows]
        else:  # delta: rows changed after the token, in change order, deleted ones included
            rows = [r for r in table.rows.values() if since < r.data["versionnumber"] <= start_version]
            keyed = sorted(((0, f"{r.data['versionnumber']:012d}"), r) for r in rows)
        if last:
            ts_s, _, last_id = last.partition("|")
            keyed = [(k, r) for k, r in keyed if k > (int(ts_s), last_id)]
        size = self._page_size(prefs, query)
        page = keyed[:size]
        annotated = self._annotated(prefs)
        context = f"{self.base_url}{API}/$metadata#{entity.name}"
        values: list[dict[str, Any]] = []
        for _, row in page:
            if row.deleted:
                values.append(
                    {"@odata.context": f"{context}/$deletedEntity", "id": row.id, "reason": "deleted"}
                )
            else:
                values.append(self._render(entity, row, select, annotated))
        body: dict[str, Any] = {"@odata.context": context, "value": values}
        if len(keyed) > size:
            key = page[-1][0]
            cookie_text = (f'<cookie pagenumber="{page_no + 1}" last="{key[0]}|{key[1]}" v="{start_version}" '
                           f'delta="{since}" />')  # fmt: skip
            body["@odata.nextLink"] = self._link(entity, query, **{"$skiptoken": cookie_text})
        else:
            stamp = time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime())
            body["@odata.deltaLink"] = self._link(
                entity, query, **{"$deltatoken": f"{start_version}!{stamp}"}
            )
        applied = ["odata.track-changes"] + (
            [f"odata.maxpagesize={size}"] if "odata.maxpagesize" in prefs else []
        )
        return json_response(200, body, **{"OData-Version": "4.0", "Preference-Applied": ",".join(applied)})

    def get_row(self, request: SimRequest) -> SimResponse:
        try:
            entity = self._entity(request)
            assert request.match is not None
            row, _ = self._find(entity, request.match.group("key"))
            select = self._select(entity, request.query)
        except LookupError as exc:
            return self.error(404, str(exc), NOT_FOUND)
        except ValueError as exc:
            return self.error(400, str(exc), BAD_REQUEST)
        if row is None:
            return self.error(404, f"{entity.logical} With Id = {request.match.group('key')} Does Not Exist",
                              NOT_FOUND)  # fmt: skip
        body = self._render(entity, row, select, self._annotated(self._prefer(request)))
        return json_response(200, {"@odata.context": f"{self.base_url}{API}/$metadata#{entity.name}/$entity",
                                   **body})  # fmt: skip
