"""In-memory vendor tables: rows kept in change order (modified second, id) so an incremental read is a
bisect, optional unique indexes for look-ups by external id, and a snapshot/restore for the all-or-none
calls of vendors that roll a batch back when one part fails."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any


class Row:
    __slots__ = ("cache", "data", "deleted", "id", "ts")

    def __init__(self, id: str, ts: int, data: dict[str, Any]) -> None:
        self.id = id
        self.ts = ts
        self.data = data
        self.deleted = False
        self.cache: dict[Any, bytes] = {}


class Table:
    """Rows kept sorted by (modified second, id) so incremental queries are a bisect, not a scan."""

    def __init__(self, name: str, *, unique: tuple[str, ...] = ()) -> None:
        self.name = name
        self.rows: dict[str, Row] = {}
        self._keys: list[tuple[int, str]] = []
        self._indexes: dict[str, dict[Any, str]] = {f: {} for f in unique}
        self.lock = threading.RLock()

    def __len__(self) -> int:
        return len(self.rows)

    def insert(self, row: Row) -> Row:
        with self.lock:
            self.rows[row.id] = row
            bisect.insort(self._keys, (row.ts, row.id))
            self._index(row)
        return row

    def _index(self, row: Row) -> None:
        for name, index in self._indexes.items():
            value = row.data.get(name)
            if value not in (None, ""):
                index[value] = row.id

    def find(self, name: str, value: Any) -> Row | None:
        row_id = self._indexes[name].get(value)
        return self.rows.get(row_id) if row_id else None

    def update(self, row_id: str, changes: Mapping[str, Any], *, ts: int | None = None) -> Row:
        """Apply `changes` and move the row to the end of the change order."""
        with self.lock:
            row = self.rows[row_id]
            self._keys.pop(bisect.bisect_left(self._keys, (row.ts, row.id)))
            row.data.update(changes)
            row.ts = max(ts if ts is not None else now_s(), self._keys[-1][0] if self._keys else 0)
            row.cache.clear()
            bisect.insort(self._keys, (row.ts, row.id))
            self._index(row)
            return row

    def snapshot(self) -> tuple[dict[str, Row], list[tuple[int, str]], dict[str, dict[Any, str]]]:
        """A copy of the table to `restore` when an all-or-none vendor call fails half-way."""
        with self.lock:
            rows = {}
            for key, row in self.rows.items():
                copy = Row(row.id, row.ts, dict(row.data))
                copy.deleted = row.deleted
                rows[key] = copy
            return rows, list(self._keys), {k: dict(v) for k, v in self._indexes.items()}

    def restore(self, snap: tuple[dict[str, Row], list[tuple[int, str]], dict[str, dict[Any, str]]]) -> None:
        with self.lock:
            self.rows, self._keys, self._indexes = snap[0], snap[1], snap[2]

    def since(self, ts: int | None = None, after_id: str | None = None) -> list[Row]:
        """Rows with (ts, id) >= (ts, after_id) — or strictly after when after_id is given — oldest first."""
        with self.lock:
            if ts is None:
                keys = self._keys
            elif after_id is None:
                keys = self._keys[bisect.bisect_left(self._keys, (ts, "")) :]
            else:
                keys = self._keys[bisect.bisect_right(self._keys, (ts, after_id)) :]
            rows = self.rows
            return [rows[k[1]] for k in keys]

    def newest(self) -> Iterator[Row]:
        with self.lock:
            keys = list(reversed(self._keys))
        for _, row_id in keys:
            yield self.rows[row_id]


def now_s() -> int:
    return int(time.time())
