"""Steps other apps add to `manage.py migrate` (apps/core/management/commands/migrate.py).

The command lives in core, which imports no app above it: an app that must act around a migration registers
its steps in its AppConfig.ready(), so every web process, worker and command builds the same list at start-up;
nothing is registered at run time. Audit hands its tables to the runtime role while its migrations run and to
the audit owner role after each alias (apps/audit/roles.py); tenants makes the Region rows match the settings
once the control database is migrated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MigrateHooks:
    """What one app does around `migrate`; each step is called with the database alias."""

    #: Before the alias migrates, once the privileged connection prepared it (none, or --plan: skipped).
    before: Callable[[str], None] | None = None
    #: After the alias, also when its migration failed (skipped by --plan): a warning to print, or None.
    after: Callable[[str], str | None] | None = None
    #: After the alias migrated completely (skipped by --plan and when an app label limits the run).
    migrated: Callable[[str], None] | None = None


_hooks: dict[str, MigrateHooks] = {}


def migrate_hooks_register(*, app_label: str, hooks: MigrateHooks) -> None:
    """Run `hooks` around every `migrate`; one entry per app, so a second ready() replaces, never doubles."""
    _hooks[app_label] = hooks


def migrate_hooks() -> list[MigrateHooks]:
    """The registered hooks in registration order, which is INSTALLED_APPS order."""
    return list(_hooks.values())
