"""CRM search: POST /crm/v3/objects/{type}/search with filter groups (EQ, NEQ, IN, NOT_IN, GT/GTE/LT/LTE,
BETWEEN, HAS_PROPERTY, CONTAINS_TOKEN...), the free-text `query`, sorts, HubSpot's filter limits and the
10,000-result cap that forces an incremental reader to narrow its window."""

from __future__ import annotations

import datetime as dt
from typing import Any

from connectors.hubspot.simulator.associations import HubSpotAssociations
from connectors.hubspot.simulator.schema import PROPERTIES, SEARCH_LIMITS, modified_property
from connectors.simulation import Row, SimRequest, SimResponse


def _ms(value: Any) -> int:
    """Filter values arrive as epoch milliseconds or ISO strings."""
    text = str(value)
    if text.isdigit():
        return int(text)
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class SearchEndpoint(HubSpotAssociations):
    """The search endpoint and its filter semantics."""

    def __init__(self, *, search_cap: int = 10_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.search_cap = search_cap

    def search(self, request: SimRequest) -> SimResponse:
        found = self._table(request)
        if found is None:
            return self._error(400, "Unable to infer object type", "VALIDATION_ERROR")
        object_type, table = found
        query = request.json() or {}
        limit, after = int(query.get("limit", 10)), int(query.get("after") or 0)
        if limit > 200:
            return self._error(400, "limit must be <= 200", "VALIDATION_ERROR")
        if after + limit > self.search_cap:
            return self._error(
                400,
                f"The search result set is limited to {self.search_cap} results; "
                "narrow the query with filters",
                "VALIDATION_ERROR",
            )
        mod = modified_property(object_type)
        groups = query.get("filterGroups") or []
        too_many = self._search_too_big(groups)
        if too_many:
            return self._error(400, too_many, "VALIDATION_ERROR")
        start = None
        filters = [f for g in groups for f in g.get("filters", [])]
        lows = [f for f in filters if f["propertyName"] == mod and f["operator"] in ("GTE", "GT")]
        if lows and len(groups) == 1:
            start = _ms(lows[0]["value"]) // 1000
        rows = [r for r in table.since(start) if not r.deleted]
        if groups:
            rows = [
                r
                for r in rows
                if any(all(self._match(object_type, r, f) for f in g.get("filters", [])) for g in groups)
            ]
        if query.get("query"):
            rows = [r for r in rows if self._text_match(object_type, r, str(query["query"]))]
        sorts = query.get("sorts") or []
        if sorts and (sorts[0].get("propertyName"), sorts[0].get("direction", "ASCENDING")) != (
            mod,
            "ASCENDING",
        ):
            name, desc = sorts[0]["propertyName"], sorts[0].get("direction") == "DESCENDING"
            rows.sort(
                key=lambda r: str(self._object(object_type, r, (name,))["properties"][name] or ""),
                reverse=desc,
            )
        props = tuple(query.get("properties") or ()) or None
        page = rows[after : after + limit]
        body = f'{{"total":{len(rows)},"results":['.encode()
        body += b",".join(self._json(object_type, r, props) for r in page) + b"]"
        if after + limit < len(rows):
            body += f',"paging":{{"next":{{"after":"{after + limit}"}}}}'.encode()
        return SimResponse(200, body + b"}")

    def _match(self, object_type: str, row: Row, flt: dict[str, Any]) -> bool:
        name, op, value = flt["propertyName"], flt["operator"], flt.get("value")
        if name == modified_property(object_type):
            left: Any = row.ts * 1000
            right: Any = _ms(value) if value is not None else None
        else:
            left, right = row.data.get(name), value
        if op == "HAS_PROPERTY":
            return left not in (None, "")
        if op == "NOT_HAS_PROPERTY":
            return left in (None, "")
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(value or "").lower().strip("*")
            found = token in str(left or "").lower()
            return found if op == "CONTAINS_TOKEN" else not found
        if op == "NOT_IN":
            return str(left) not in [str(v) for v in flt.get("values", [])]
        if op == "BETWEEN":
            high = flt.get("highValue")
            if name == modified_property(object_type):
                high = _ms(high) if high is not None else None
            return left is not None and right is not None and high is not None and right <= left <= high
        if op == "EQ":
            return str(left) == str(right)
        if op == "NEQ":
            return str(left) != str(right)
        if op == "IN":
            return str(left) in [str(v) for v in flt.get("values", [])]
        if left is None or right is None:
            return False
        return {"GT": left > right, "GTE": left >= right, "LT": left < right, "LTE": left <= right}.get(
            op, False
        )

    @staticmethod
    def _search_too_big(groups: Any) -> str | None:
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            return "filterGroups must be a list of {filters: [...]}"
        max_groups, max_per_group, max_total = SEARCH_LIMITS
        sizes = [len(g.get("filters") or []) for g in groups]
        if len(groups) > max_groups or any(n > max_per_group for n in sizes) or sum(sizes) > max_total:
            return (f"Too many filters: at most {max_groups} filterGroups with at most {max_per_group} "
                    f"filters each, {max_total} in all")  # fmt: skip
        return None

    @staticmethod
    def _text_match(object_type: str, row: Row, text: str) -> bool:
        """The search `query` string: a (case-insensitive) prefix of a word in a text property."""
        needle = text.lower().strip()
        values = [str(row.data.get(p) or "").lower() for p in PROPERTIES[object_type]]
        return any(word.startswith(needle) or needle in value for value in values for word in value.split())
