"""Tenants endpoints: list scoped to the caller, creation by operators, settings by manage_settings. The
generic resource checks come from tests/fixtures/api.py."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.core.context import tenant_context
from apps.tenants.models import Membership, Region, RegionTenant, Role, Tenant
from apps.tenants.services import membership_add
from tests.factories import TenantFactory
from tests.fixtures.api import ListTests, RetrieveTests, UpdateTests
from tests.fixtures.auth import issue_token, token_client

pytestmark = pytest.mark.django_db

TENANTS = "/api/v1/tenants/"
TENANT_A = "/api/v1/tenants/tenant-a/"


def _slugs(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["slug"] for item in response.json()["results"]]


class TestTenantsAPI(ListTests, RetrieveTests, UpdateTests):
    """A tenant is a resource of its own: listed to its members, read by them, changed by its admins."""

    list_view = "tenants-api:tenant-list"
    detail_view = "tenants-api:tenant-detail"
    lookup = "slug"
    instance_data = {"slug": "tenant-a", "home_region": "eu"}
    update_data = {"name": "Renamed", "enabled_locales": ["fr"], "require_2fa": True}
    updated = {"name": "Renamed", "enabled_locales": ["en", "fr"], "require_2fa": True}

    @pytest.fixture
    def instance(self, tenant_a: Tenant) -> Tenant:
        return tenant_a

    def list_kwargs(self, instance: Any, tenant: Tenant) -> dict[str, Any]:
        return {}

    def detail_kwargs(self, instance: Any, tenant: Tenant) -> dict[str, Any]:
        return {"slug": tenant.slug}

    # --- list -----------------------------------------------------------------------------------------------
    def test_list_shows_only_the_callers_tenants(self, bob_session: APIClient, tenant_b: Tenant) -> None:
        assert _slugs(bob_session.get(TENANTS)) == ["tenant-a"]

    def test_list_with_token_shows_the_tokens_tenant(self, alice_api: APIClient, tenant_b: Tenant) -> None:
        assert _slugs(alice_api.get(TENANTS)) == ["tenant-a"]

    def test_operator_lists_all_tenants_and_filters(
        self, operator_session: APIClient, tenant_a: Tenant, tenant_b: Tenant
    ) -> None:
        assert _slugs(operator_session.get(TENANTS)) == ["tenant-a", "tenant-b"]
        assert _slugs(operator_session.get(TENANTS, {"home_region": "us"})) == ["tenant-b"]
        assert _slugs(operator_session.get(TENANTS, {"q": "nant-a"})) == ["tenant-a"]

    def test_list_of_a_member_hides_inactive_tenants(self, bob_session: APIClient, tenant_a: Tenant) -> None:
        Tenant.objects.filter(pk=tenant_a.pk).update(is_active=False)
        assert _slugs(bob_session.get(TENANTS)) == []

    def test_tenant_list_is_paginated_and_free_of_n_plus_1(
        self, operator_session: APIClient, region_eu: Region, django_assert_max_num_queries: Any
    ) -> None:
        for n in range(12):
            TenantFactory.create(slug=f"bulk-{n:02d}", home_region=region_eu)
        with django_assert_max_num_queries(5):
            response = operator_session.get(TENANTS, {"limit": 10})
        body = response.json()
        assert body["count"] == 12
        assert len(body["results"]) == 10
        assert body["next"] is not None
        assert body["results"][0]["home_region"] == "eu"

    # --- create ---------------------------------------------------------------------------------------------
    def test_operator_creates_a_tenant(self, operator_session: APIClient, region_us: Region) -> None:
        response = operator_session.post(
            TENANTS,
            {"slug": "globex", "name": "Globex", "home_region": "us", "default_locale": "de"},
            format="json",
        )
        assert response.status_code == 201, response.content
        assert response.json()["home_region"] == "us"
        assert response.json()["enabled_locales"] == ["de"]
        tenant = Tenant.objects.get(slug="globex")
        with tenant_context(tenant):
            assert RegionTenant.objects.get().slug == "globex"

    def test_admin_cannot_create_tenants(
        self, alice_session: APIClient, alice_api: APIClient, region_eu: Region
    ) -> None:
        body = {"slug": "mine", "name": "Mine", "home_region": "eu"}
        assert alice_session.post(TENANTS, body, format="json").status_code == 403
        assert alice_api.post(TENANTS, body, format="json").status_code == 403
        assert not Tenant.objects.filter(slug="mine").exists()

    def test_operator_token_cannot_create_tenants(
        self, tenant_a: Tenant, operator: Any, region_eu: Region
    ) -> None:

        client = token_client(issue_token(tenant_a, operator))
        response = client.post(TENANTS, {"slug": "x", "name": "X", "home_region": "eu"}, format="json")
        assert response.status_code == 403

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"slug": "Bad Slug", "name": "X", "home_region": "eu"}, "slug"),
            ({"slug": "ok", "name": "X", "home_region": "mars"}, "home_region"),
            ({"slug": "ok", "name": "X", "home_region": "eu", "default_locale": "english"}, "default_locale"),
            ({"slug": "ok", "name": "X", "home_region": "eu", "enabled_locales": "en"}, "enabled_locales"),
            ({"slug": "ok", "home_region": "eu"}, "name"),
            ({"slug": "ok", "name": "X", "home_region": "eu", "colour": "red"}, "colour"),
            ({"slug": "tenant-a", "name": "Again", "home_region": "eu"}, "slug"),
        ],
    )
    def test_create_rejects_bad_input_with_field_errors(
        self, operator_session: APIClient, tenant_a: Tenant, body: dict[str, Any], field: str
    ) -> None:
        response = operator_session.post(TENANTS, body, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()

    def test_create_rejects_a_non_object_body(self, operator_session: APIClient, region_eu: Region) -> None:
        response = operator_session.post(TENANTS, ["not", "an", "object"], format="json")
        assert response.status_code == 400
        response = operator_session.post(TENANTS, "{not json", content_type="application/json")
        assert response.status_code == 400

    # --- detail ---------------------------------------------------------------------------------------------
    def test_only_operators_deactivate_tenants(
        self, alice_api: APIClient, operator_session: APIClient
    ) -> None:
        assert alice_api.patch(TENANT_A, {"is_active": False}, format="json").status_code == 403
        response = operator_session.patch(TENANT_A, {"is_active": False}, format="json")
        assert response.status_code == 200
        assert response.json()["is_active"] is False

    def test_home_region_changes_while_empty(
        self, alice_api: APIClient, tenant_a: Tenant, region_us: Region, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # What counts as data is the service's business (tested there); here: the API passes the change on.
        monkeypatch.setattr("apps.tenants.services.tenant_has_region_data", lambda *, tenant: False)
        response = alice_api.patch(TENANT_A, {"home_region": "us"}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["home_region"] == "us"

    def test_home_region_change_with_data_is_409(
        self, alice_api: APIClient, tenant_a: Tenant, region_us: Region, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Later issues add the region models that hold data; stand in for "the region holds data".
        monkeypatch.setattr("apps.tenants.services.tenant_has_region_data", lambda *, tenant: True)
        response = alice_api.patch(TENANT_A, {"home_region": "us"}, format="json")
        assert response.status_code == 409
        assert "home region" in response.json()["detail"]
        assert Tenant.objects.get(pk=tenant_a.pk).home_region.code == "eu"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"slug": "renamed"}, "slug"),
            ({"nmae": "typo"}, "nmae"),
            ({"default_locale": "english"}, "default_locale"),
            ({"require_2fa": "perhaps"}, "require_2fa"),
            ({"home_region": "mars"}, "home_region"),
            ({"name": ""}, "name"),
        ],
    )
    def test_patch_rejects_bad_input(self, alice_api: APIClient, body: dict[str, Any], field: str) -> None:
        response = alice_api.patch(TENANT_A, body, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()

    def test_unknown_field_error_says_so(self, alice_api: APIClient) -> None:
        response = alice_api.patch(TENANT_A, {"colour": "red", "slug": "x"}, format="json")
        assert response.status_code == 400
        assert response.json() == {"colour": ["Unknown field."], "slug": ["This field cannot be changed."]}

    def test_demoted_admins_token_loses_write_access(
        self, alice_api: APIClient, tenant_a: Tenant, bob: Any
    ) -> None:
        membership_add(tenant=tenant_a, user=bob, role=Role.ADMIN)
        alice = Membership.objects.get(tenant=tenant_a, user__username="alice")
        Membership.objects.filter(pk=alice.pk).update(role=Role.VIEWER)
        assert alice_api.patch(TENANT_A, {"name": "X"}, format="json").status_code == 403
        assert alice_api.get(TENANT_A).status_code == 200
