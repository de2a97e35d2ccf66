"""`migrate` (in core) runs the steps apps register in apps/core/migrate_hooks.py, without importing them."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.audit.roles import audit_roles_after_migrate, audit_roles_before_migrate
from apps.core import migrate_hooks
from apps.core.migrate_hooks import MigrateHooks
from apps.tenants.models import Region


def test_audit_and_tenants_register_their_steps_at_start_up() -> None:
    registered = migrate_hooks.migrate_hooks()
    assert MigrateHooks(before=audit_roles_before_migrate, after=audit_roles_after_migrate) in registered
    assert any(hooks.migrated is not None for hooks in registered)  # tenants: the Region rows


@pytest.mark.django_db(transaction=True)
def test_migrate_runs_the_registered_steps_around_each_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    hooks = MigrateHooks(
        before=lambda alias: calls.append(("before", alias)),
        after=lambda alias: calls.append(("after", alias)) or "WARNING: test step",  # type: ignore[func-returns-value]
        migrated=lambda alias: calls.append(("migrated", alias)),
    )
    monkeypatch.setitem(migrate_hooks._hooks, "test", hooks)

    call_command("migrate", database="region_eu", verbosity=0)
    assert calls == [("before", "region_eu"), ("after", "region_eu"), ("migrated", "region_eu")]

    calls.clear()
    call_command("migrate", "audit", database="region_eu", verbosity=0)  # limited to an app: not "migrated"
    assert calls == [("before", "region_eu"), ("after", "region_eu")]

    calls.clear()
    call_command("migrate", database="region_eu", plan=True, verbosity=0)
    assert calls == []


@pytest.mark.django_db(transaction=True)
def test_migrating_the_control_database_syncs_the_regions() -> None:
    Region.objects.create(code="zz", name="Gone", is_active=True)
    call_command("migrate", database="default", verbosity=0)
    assert Region.objects.get(code="zz").is_active is False
    assert set(Region.objects.filter(is_active=True).values_list("code", flat=True)) == {"eu", "us"}
