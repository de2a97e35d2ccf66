"""The generic resource checks (tests/fixtures/api.py) fail on the bugs they are there to catch."""

from __future__ import annotations

from typing import Any

import pytest

from apps.tenants.api.views import MemberDetailView, TenantScopedView
from apps.tenants.models import Membership, Tenant
from tests.fixtures.api import ListTests, RetrieveTests, UpdateTests

pytestmark = pytest.mark.django_db


class Members(ListTests, RetrieveTests, UpdateTests):
    """Not collected (no Test prefix): the tests below call its checks by hand."""

    list_view = "tenants-api:member-list"
    detail_view = "tenants-api:member-detail"
    update_data = {"role": "compliance_officer"}


def test_the_checks_pass_on_the_real_views(
    bob_membership: Membership, tenant_a: Tenant, tenant_b: Tenant, request: pytest.FixtureRequest
) -> None:
    Members().test_other_tenant_gets_404("token", bob_membership, tenant_a, tenant_b, request)
    Members().test_viewer_may_not_write("token", bob_membership, tenant_a, request)


def test_an_object_looked_up_outside_the_urls_tenant_fails_the_other_tenant_check(
    bob_membership: Membership,
    tenant_a: Tenant,
    tenant_b: Tenant,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def any_tenants(view: Any) -> Membership:
        return Membership.objects.select_related("user").get(pk=view.kwargs["id"])

    monkeypatch.setattr(MemberDetailView, "get_object", any_tenants)
    with pytest.raises(AssertionError, match="200"):
        Members().test_other_tenant_gets_404("token", bob_membership, tenant_a, tenant_b, request)


def test_a_write_without_the_permission_check_fails_the_viewer_check(
    bob_membership: Membership,
    tenant_a: Tenant,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(TenantScopedView, "require", lambda view, permission: None)
    with pytest.raises(AssertionError, match="patch"):
        Members().test_viewer_may_not_write("token", bob_membership, tenant_a, request)
