"""Who wants to hear that a tenant's chain grew: a registry higher apps fill in AppConfig.ready().

Audit may not import them (layers), so SIEM streaming registers its kick here, like apps/policies/registry.py.
A hook runs after the appending transaction commits, must be cheap (it is on every append's path) and must
never raise: the event is recorded whatever a listener does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apps.core.context import TenantRef

logger = logging.getLogger(__name__)

AppendedHook = Callable[[TenantRef], None]
_appended: list[AppendedHook] = []


def register_appended(func: AppendedHook) -> None:
    """Call `func(tenant)` after each commit that appended to a tenant's chain (registered once)."""
    if func not in _appended:
        _appended.append(func)


def has_appended_hooks() -> bool:
    return bool(_appended)


def run_appended(ref: TenantRef) -> None:
    for func in _appended:
        try:
            func(ref)
        except Exception as exc:  # a listener must never undo or fail an append
            logger.warning("audit hook %s failed: %s", getattr(func, "__name__", func), type(exc).__name__)
