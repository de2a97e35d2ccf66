"""Django's PostgreSQL backend with deadlines (apps/core/deadlines.py): statement budget per kind of work, and
every call — queries, the reuse health check, commit and rollback — watched by the client-side watchdog."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base

from apps.core import deadlines


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute_wrappers.append(deadlines.execute_guard)

    def init_connection_state(self) -> None:
        super().init_connection_state()
        deadlines.connection_init(self)

    def is_usable(self) -> bool:
        with deadlines.db_call(self):
            return bool(super().is_usable())

    def _commit(self) -> None:
        with deadlines.db_call(self):
            super()._commit()  # type: ignore[misc]  # private in django-stubs

    def _rollback(self) -> None:
        with deadlines.db_call(self):
            super()._rollback()  # type: ignore[misc]  # private in django-stubs
