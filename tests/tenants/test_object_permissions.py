"""Object permissions on region objects: guardian rows in the control silo, evaluated as ids."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.security.models import VaultEntry
from apps.tenants.models import Tenant
from apps.tenants.selectors import permitted_ids
from apps.tenants.services import object_permission_grant, object_permission_revoke

pytestmark = pytest.mark.django_db
PERM = "security.view_vaultentry"


def test_grant_filter_and_revoke(tenant_a: Tenant, alice: Any, bob: Any) -> None:
    with tenant_context(tenant_a):
        mine = VaultEntry.objects.create(token="a1", kind="secret", value="x")
        other = VaultEntry.objects.create(token="a2", kind="secret", value="y")
        object_permission_grant(user=bob, perm=PERM, obj=mine, actor=alice, tenant=tenant_a)
        ids = permitted_ids(user=bob, perm=PERM, model=VaultEntry)
        assert ids == {str(mine.pk)}
        assert list(VaultEntry.objects.filter(pk__in=ids).values_list("token", flat=True)) == ["a1"]
        assert bob.has_perm(PERM, mine)
        assert not bob.has_perm(PERM, other)
        object_permission_revoke(user=bob, perm=PERM, obj=mine, actor=alice, tenant=tenant_a)
        assert permitted_ids(user=bob, perm=PERM, model=VaultEntry) == set()


def test_only_members_can_be_granted(tenant_a: Tenant, alice: Any, charlie: Any) -> None:
    with tenant_context(tenant_a):
        entry = VaultEntry.objects.create(token="a1", kind="secret", value="x")
        with pytest.raises(ValidationFailed):
            object_permission_grant(user=charlie, perm=PERM, obj=entry, actor=alice, tenant=tenant_a)
        assert permitted_ids(user=charlie, perm=PERM, model=VaultEntry) == set()


def test_uuid_keys_never_collide_across_regions(
    tenant_a: Tenant, tenant_b: Tenant, alice: Any, charlie: Any
) -> None:
    """Integer keys from two region databases would collide in guardian's rows; UUIDs cannot."""
    with tenant_context(tenant_a):
        entry_a = VaultEntry.objects.create(token="a", kind="secret", value="x")
    with tenant_context(tenant_b):
        entry_b = VaultEntry.objects.create(token="b", kind="secret", value="y")
    assert entry_a.pk != entry_b.pk
