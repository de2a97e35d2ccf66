"""SOQL: the parser of the subset the hub and simple-salesforce send (SELECT fields FROM object, WHERE with
AND/OR, =, !=, <, >, IN, NOT IN and LIKE, ORDER BY, LIMIT, OFFSET, COUNT() and COUNT(field)), and the
query/queryAll endpoints with their nextRecordsUrl locators and Sforce-Query-Options batch sizes."""

from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict
from typing import Any

from connectors.salesforce.simulator.schema import OBJECTS, sf_time
from connectors.salesforce.simulator.store import SalesforceStore
from connectors.simulation import Row, SimRequest, SimResponse, json_response

_SOQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<obj>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>.+?))?(?:\s+LIMIT\s+(?P<limit>\d+))?"
    r"(?:\s+OFFSET\s+(?P<offset>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
#: `SELECT COUNT() FROM ...` (only totalSize) and `SELECT COUNT(field) [alias] FROM ...` (an AggregateResult).
_COUNT = re.compile(
    r"^\s*SELECT\s+COUNT\(\s*(?P<field>\w*)\s*\)(?:\s+(?P<alias>(?!FROM\b)\w+))?\s+(?P<rest>FROM\s.+)$",
    re.IGNORECASE | re.DOTALL,
)
_COND = re.compile(
    r"^\s*(\w+)\s*(>=|<=|!=|=|>|<|\bNOT\s+IN\b|\bIN\b|\bLIKE\b)\s*(.+?)\s*$", re.IGNORECASE | re.DOTALL
)
_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)$")


class QueryError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SoqlEndpoints(SalesforceStore):
    """GET /query and /queryAll (paged by query locators) and the SOQL they run."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._locators: OrderedDict[str, tuple[list[Row], str, tuple[str, ...]]] = OrderedDict()
        self._locator_seq = 0

    def _literal(self, text: str) -> Any:
        text = text.strip()
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1].replace("\\'", "'")
        if _DATETIME.match(text):
            return sf_time(int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()))
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        if text.lower() == "null":
            return None
        try:
            return float(text) if "." in text else int(text)
        except ValueError:
            raise QueryError("MALFORMED_QUERY", f"unexpected token: '{text}'") from None

    def _run_soql(self, soql: str, *, include_deleted: bool) -> tuple[str, tuple[str, ...], list[Row]]:
        m = _SOQL.match(soql)
        if not m:
            raise QueryError("MALFORMED_QUERY", f"unexpected token in query: {soql[:60]}")
        obj = m.group("obj")
        canonical = {name.lower(): name for name in OBJECTS}
        if obj.lower() not in canonical:
            raise QueryError("INVALID_TYPE", f"sObject type '{obj}' is not supported.")
        obj = canonical[obj.lower()]
        known = {f.lower(): f for f in self._fields_of(obj)}
        fields: list[str] = []
        for raw in m.group("fields").split(","):
            name = raw.strip()
            if name.lower() not in known:
                raise QueryError("INVALID_FIELD", f"No such column '{name}' on entity '{obj}'.")
            fields.append(known[name.lower()])
        table = self.tables[OBJECTS[obj][0]]
        groups: list[list[tuple[str, str, Any]]] = []  # OR of ANDs, no parentheses
        lower_ts: str | None = None
        for alternative in _split_outside_quotes(m.group("where") or "", "OR"):
            conditions: list[tuple[str, str, Any]] = []
            for part in _split_outside_quotes(alternative, "AND"):
                cm = _COND.match(part)
                if not cm:
                    raise QueryError("MALFORMED_QUERY", f"unexpected token: '{part.strip()[:60]}'")
                name, op, raw_value = cm.group(1), re.sub(r"\s+", " ", cm.group(2).upper()), cm.group(3)
                if name.lower() not in known:
                    raise QueryError("INVALID_FIELD", f"No such column '{name}' on entity '{obj}'.")
                if op in ("IN", "NOT IN"):
                    value: Any = [self._literal(v) for v in raw_value.strip("() ").split(",")]
                else:
                    value = self._literal(raw_value)
                field = known[name.lower()]
                if field in ("SystemModstamp", "LastModifiedDate") and op in (">=", ">"):
                    lower_ts = value
                conditions.append((field, op, value))
            if conditions:
                groups.append(conditions)
        start = None
        if lower_ts is not None and len(groups) == 1:  # with OR the bound may not hold for every row
            start = int(dt.datetime.fromisoformat(lower_ts.replace("+0000", "+00:00")).timestamp())
        rows = table.since(start)
        if not include_deleted:
            rows = [r for r in rows if not r.deleted]
        if groups:
            rows = [
                r for r in rows
                if any(all(_compare(self._value(r, f), op, v) for f, op, v in group) for group in groups)
            ]  # fmt: skip
        order = (m.group("order") or "").replace(" ", "").lower()
        if order and order not in ("systemmodstamp,id", "systemmodstamp", "lastmodifieddate,id", "id"):
            keys = [
                known.get(k.strip().split()[0].lower(), "Id") for k in (m.group("order") or "").split(",")
            ]
            rows.sort(key=lambda r: tuple(str(self._value(r, k) or "") for k in keys))
        elif order == "id":
            rows.sort(key=lambda r: r.id)
        if m.group("offset"):
            if int(m.group("offset")) > 2000:
                raise QueryError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
            rows = rows[int(m.group("offset")) :]
        if m.group("limit"):
            rows = rows[: int(m.group("limit"))]
        return obj, tuple(fields), rows

    def _batch_size(self, request: SimRequest) -> int:
        options = request.headers.get("sforce-query-options", "")
        m = re.search(r"batchSize=(\d+)", options)
        size = int(m.group(1)) if m else int(request.query.get("batchSize", 2000))
        return max(200, min(2000, size))

    def _page(self, request: SimRequest, locator: str, offset: int) -> SimResponse:
        try:
            rows, obj, fields = self._locators[locator]
        except KeyError:
            return self._errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        size = self._batch_size(request)
        chunk = rows[offset : offset + size]
        end = offset + len(chunk)
        done = end >= len(rows)
        head = f'{{"totalSize":{len(rows)},"done":{"true" if done else "false"},'
        if not done:
            head += f'"nextRecordsUrl":"/services/data/v59.0/query/{locator}-{end}",'
        else:
            self._locators.pop(locator, None)
        body = (
            head.encode() + b'"records":[' + b",".join(self._row_json(obj, fields, r) for r in chunk) + b"]}"
        )
        return SimResponse(200, body)

    def query(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        include_deleted = request.match.group("endpoint") == "queryAll"
        counted = _COUNT.match(request.query.get("q", ""))
        if counted:
            return self._count(counted, include_deleted=include_deleted)
        try:
            obj, fields, rows = self._run_soql(request.query.get("q", ""), include_deleted=include_deleted)
        except QueryError as exc:
            return self._errors(400, exc.code, str(exc))
        self._locator_seq += 1
        locator = f"01gHb{self._locator_seq:010d}"
        self._locators[locator] = (rows, obj, fields)
        while len(self._locators) > 200:
            self._locators.popitem(last=False)
        return self._page(request, locator, 0)

    def query_more(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        return self._page(request, request.match.group("locator"), int(request.match.group("offset")))

    def _count(self, counted: re.Match[str], *, include_deleted: bool) -> SimResponse:
        """COUNT() answers only totalSize (no records); COUNT(field) one AggregateResult row (expr0)."""
        field = counted.group("field")
        try:
            _obj, _fields, rows = self._run_soql(
                f"SELECT {field or 'Id'} {counted.group('rest')}", include_deleted=include_deleted
            )
        except QueryError as exc:
            return self._errors(400, exc.code, str(exc))
        if not field:
            return json_response(200, {"totalSize": len(rows), "done": True, "records": []})
        value = sum(1 for r in rows if self._value(r, field) not in (None, ""))
        record = {"attributes": {"type": "AggregateResult"}, counted.group("alias") or "expr0": value}
        return json_response(200, {"totalSize": 1, "done": True, "records": [record]})


def _split_outside_quotes(text: str, word: str) -> list[str]:
    """Split a WHERE clause on AND/OR, but not inside a quoted literal ('Smith AND Sons')."""
    parts = re.split(rf"\s+{word}\s+(?=(?:[^']*'[^']*')*[^']*$)", text, flags=re.IGNORECASE)
    return [p for p in parts if p.strip()]


def _like(left: Any, pattern: Any) -> bool:
    """SOQL LIKE: % any run, _ one character, case-insensitive."""
    if left is None or not isinstance(pattern, str):
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, str(left), re.IGNORECASE | re.DOTALL) is not None


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "IN":
        return left in right
    if op == "NOT IN":
        return left not in right
    if op == "LIKE":
        return _like(left, right)
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if left is None or right is None:
        return False
    if op == ">=":
        return bool(left >= right)
    if op == ">":
        return bool(left > right)
    if op == "<=":
        return bool(left <= right)
    return bool(left < right)
