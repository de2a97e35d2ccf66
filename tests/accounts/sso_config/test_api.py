"""The SSO configuration management API: identity providers (secret write-only), domains with DNS verify,
role mappings with move and preview, SSO settings; 404 for other tenants, 403 for non-admins."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import IdentityProvider, RoleMapping, SsoDomain
from apps.accounts.services import sso_config
from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.tenants.models import Membership, Tenant

pytestmark = pytest.mark.django_db


def api(tenant: Tenant, path: str) -> str:
    return f"/api/v1/tenants/{tenant.slug}/{path}"


def test_provider_crud_secret_write_only(
    alice_api: APIClient, tenant_a: Tenant, settings: Any, caplog: Any, saml_metadata: str
) -> None:
    settings.HUB_CHANNELS_PUBLIC_URL = "https://hub.example.com"
    secret = "api-client-secret-value-77"
    body = {
        "name": "Okta",
        "protocol": "oidc",
        "oidc_discovery_url": "https://acme.okta.com/.well-known/openid-configuration",
        "oidc_client_id": "0oa1",
        "oidc_client_secret": secret,
        "default_role": "viewer",
        "mfa_values": ["mfa"],
    }
    created = alice_api.post(api(tenant_a, "identity-providers/"), body, format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    assert secret not in created.content.decode()
    assert "oidc_client_secret" not in data
    assert data["has_client_secret"] is True
    assert data["service_provider"] == {"redirect_uri": "https://hub.example.com/accounts/sso/oidc/callback/"}
    assert data["oidc_scopes"] == "openid email profile"
    pk = data["id"]

    patched = alice_api.patch(api(tenant_a, f"identity-providers/{pk}/"), {"name": "Okta EU"}, format="json")
    assert patched.status_code == 200 and patched.json()["name"] == "Okta EU"
    stored = IdentityProvider.objects.get(pk=pk)
    assert bytes(stored.oidc_client_secret or b"") == secret.encode()  # kept
    unknown = alice_api.patch(api(tenant_a, f"identity-providers/{pk}/"), {"secret": "x"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["secret"] == ["Unknown field."]
    listed = alice_api.get(api(tenant_a, "identity-providers/"))
    assert listed.status_code == 200
    assert listed.json()["count"] == 1 and listed.json()["results"][0]["name"] == "Okta EU"
    assert secret not in listed.content.decode()

    saml = alice_api.post(
        api(tenant_a, "identity-providers/"),
        {"name": "Entra", "protocol": "saml", "saml_metadata_xml": saml_metadata},
        format="json",
    )
    assert saml.status_code == 201
    sp = saml.json()["service_provider"]
    assert sp["acs_url"] == f"https://hub.example.com/accounts/sso/{saml.json()['id']}/saml/acs/"
    bad = alice_api.post(
        api(tenant_a, "identity-providers/"),
        {"name": "Bad", "protocol": "saml", "saml_metadata_xml": "<x"},
        format="json",
    )
    assert bad.status_code == 400 and "saml_metadata_xml" in bad.json()

    assert alice_api.delete(api(tenant_a, f"identity-providers/{pk}/")).status_code == 204
    assert not IdentityProvider.objects.filter(pk=pk).exists()
    with tenant_context(tenant_a):
        audited = json.dumps(list(AuditEvent.objects.values_list("changes", flat=True)))
        actions = list(AuditEvent.objects.filter(action__startswith="sso.").values_list("action", flat=True))
    assert secret not in audited and secret not in caplog.text
    assert sorted(actions) == sorted(
        ["sso.provider_created", "sso.provider_updated", "sso.provider_created", "sso.provider_deleted"]
    )


def test_other_tenant_404_and_viewer_403(
    alice_api: APIClient,
    bob_api: APIClient,
    charlie_api: APIClient,
    tenant_a: Tenant,
    oidc_a: IdentityProvider,
) -> None:
    domain = sso_config.domain_add(tenant=tenant_a, provider=oidc_a, domain="acme.example", actor=None)
    mapping = sso_config.mapping_create(tenant=tenant_a, data={"group": "g", "role": "viewer"}, actor=None)
    endpoints = [
        ("get", "identity-providers/"),
        ("get", f"identity-providers/{oidc_a.pk}/"),
        ("patch", f"identity-providers/{oidc_a.pk}/"),
        ("delete", f"identity-providers/{oidc_a.pk}/"),
        ("post", f"identity-providers/{oidc_a.pk}/check/"),
        ("get", "sso-domains/"),
        ("get", f"sso-domains/{domain.pk}/"),
        ("post", f"sso-domains/{domain.pk}/verify/"),
        ("delete", f"sso-domains/{domain.pk}/"),
        ("get", "role-mappings/"),
        ("patch", f"role-mappings/{mapping.pk}/"),
        ("post", f"role-mappings/{mapping.pk}/move/"),
        ("post", "role-mappings/preview/"),
        ("delete", f"role-mappings/{mapping.pk}/"),
        ("get", "sso-settings/"),
        ("patch", "sso-settings/"),
    ]
    for method, path in endpoints:
        assert getattr(bob_api, method)(api(tenant_a, path), {}, format="json").status_code == 403, path
        assert getattr(charlie_api, method)(api(tenant_a, path), {}, format="json").status_code == 404, path
    # charlie's own tenant does not see A's ids either
    tenant_b = Membership.objects.get(user__username="charlie").tenant
    Membership.objects.filter(user__username="charlie").update(role="admin")
    for method, path in endpoints:
        if any(str(pk) in path for pk in (oidc_a.pk, domain.pk, mapping.pk)) and "/" in path.rstrip("/"):
            response = getattr(charlie_api, method)(api(tenant_b, path), {"offset": 1}, format="json")
            assert response.status_code == 404, path
    assert alice_api.get(api(tenant_a, "identity-providers/abc/")).status_code == 404
    assert IdentityProvider.objects.filter(pk=oidc_a.pk).exists()
    assert (
        SsoDomain.objects.filter(pk=domain.pk).exists() and RoleMapping.objects.filter(pk=mapping.pk).exists()
    )


def test_domains_and_verify(
    alice_api: APIClient, tenant_a: Tenant, oidc_a: IdentityProvider, dns_stub: Any
) -> None:
    bad = alice_api.post(
        api(tenant_a, "sso-domains/"),
        {"domain": "*.acme.example", "identity_provider_id": oidc_a.pk},
        format="json",
    )
    assert bad.status_code == 400 and "domain" in bad.json()
    foreign = alice_api.post(
        api(tenant_a, "sso-domains/"),
        {"domain": "acme.example", "identity_provider_id": 999999},
        format="json",
    )
    assert foreign.status_code == 400 and "identity_provider_id" in foreign.json()
    created = alice_api.post(
        api(tenant_a, "sso-domains/"),
        {"domain": "Acme.Example", "identity_provider_id": oidc_a.pk},
        format="json",
    )
    assert created.status_code == 201
    data = created.json()
    assert data["domain"] == "acme.example" and data["verified"] is False
    record = data["dns_record"]
    assert record["name"] == "_hub-challenge.acme.example" and record["type"] == "TXT"
    again = alice_api.post(
        api(tenant_a, "sso-domains/"),
        {"domain": "acme.example", "identity_provider_id": oidc_a.pk},
        format="json",
    )
    assert again.status_code == 400
    not_yet = alice_api.post(api(tenant_a, f"sso-domains/{data['id']}/verify/"))
    assert not_yet.status_code == 200 and not_yet.json()["ok"] is False
    assert "No TXT record" in not_yet.json()["message"]
    dns_stub.records[record["name"]] = [record["value"]]
    verified = alice_api.post(api(tenant_a, f"sso-domains/{data['id']}/verify/"))
    assert verified.json()["ok"] is True and verified.json()["domain"]["verified"] is True


def test_role_mappings(alice_api: APIClient, tenant_a: Tenant, oidc_a: IdentityProvider) -> None:
    first = alice_api.post(
        api(tenant_a, "role-mappings/"), {"group": "admins", "role": "admin"}, format="json"
    )
    second = alice_api.post(
        api(tenant_a, "role-mappings/"),
        {"group": "l10n", "role": "localization_editor", "locales": ["de"], "regions": ["eu"]},
        format="json",
    )
    assert first.status_code == 201 and second.status_code == 201
    assert second.json()["position"] == 1
    bad = alice_api.post(api(tenant_a, "role-mappings/"), {"group": "x", "role": "root"}, format="json")
    assert bad.status_code == 400 and "role" in bad.json()
    immutable = alice_api.patch(
        api(tenant_a, f"role-mappings/{first.json()['id']}/"), {"position": 4}, format="json"
    )
    assert immutable.status_code == 400 and immutable.json()["position"] == ["This field cannot be changed."]
    moved = alice_api.post(
        api(tenant_a, f"role-mappings/{second.json()['id']}/move/"), {"offset": -1}, format="json"
    )
    assert moved.status_code == 200 and moved.json()["position"] == 0
    preview = alice_api.post(
        api(tenant_a, "role-mappings/preview/"), {"groups": ["admins", "l10n"]}, format="json"
    )
    assert preview.json() == {"role": "localization_editor", "locales": ["de"], "regions": ["eu"]}
    nothing = alice_api.post(api(tenant_a, "role-mappings/preview/"), {"groups": ["x"]}, format="json")
    assert nothing.json() == {"role": None, "locales": [], "regions": []}
    listed = alice_api.get(api(tenant_a, "role-mappings/")).json()
    assert [m["group"] for m in listed["results"]] == ["l10n", "admins"]


def test_sso_settings_enforcement_and_break_glass(
    alice_api: APIClient,
    operator_session: APIClient,
    tenant_a: Tenant,
    alice: Any,
    oidc_a: IdentityProvider,
) -> None:
    initial = alice_api.get(api(tenant_a, "sso-settings/")).json()
    assert initial == {
        "sso_enforced": False,
        "can_enforce": False,
        "missing": ["verified_domain", "role_mapping", "break_glass_admin"],
        "break_glass_user_id": None,
        "break_glass_username": None,
    }
    refused = alice_api.patch(api(tenant_a, "sso-settings/"), {"sso_enforced": True}, format="json")
    assert refused.status_code == 400 and "sso_enforced" in refused.json()
    domain = sso_config.domain_add(tenant=tenant_a, provider=oidc_a, domain="acme.example", actor=alice)
    SsoDomain.objects.filter(pk=domain.pk).update(verified_at="2026-01-01T00:00:00Z")
    unconfirmed = alice_api.patch(api(tenant_a, "sso-settings/"), {"sso_enforced": True}, format="json")
    assert unconfirmed.status_code == 400 and "confirm_without_break_glass" in unconfirmed.json()
    glass = alice_api.patch(api(tenant_a, "sso-settings/"), {"break_glass_user_id": alice.pk}, format="json")
    assert glass.status_code == 403
    by_operator = operator_session.patch(
        api(tenant_a, "sso-settings/"), {"break_glass_user_id": alice.pk}, format="json"
    )
    assert by_operator.status_code == 200 and by_operator.json()["break_glass_username"] == "alice"
    enforced = alice_api.patch(api(tenant_a, "sso-settings/"), {"sso_enforced": True}, format="json")
    assert enforced.status_code == 200 and enforced.json()["sso_enforced"] is True
    # the enforcement rests on this provider: deleting it is a conflict, not a 500
    assert alice_api.delete(api(tenant_a, f"identity-providers/{oidc_a.pk}/")).status_code == 409


def test_schema_documents_the_endpoints(alice_api: APIClient) -> None:
    schema = alice_api.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    for path in (
        "/api/v1/tenants/{slug}/identity-providers/",
        "/api/v1/tenants/{slug}/sso-domains/{id}/verify/",
        "/api/v1/tenants/{slug}/role-mappings/preview/",
        "/api/v1/tenants/{slug}/sso-settings/",
    ):
        assert path in paths, path
    write = json.dumps(paths["/api/v1/tenants/{slug}/identity-providers/"]["get"])
    assert "oidc_client_secret" not in write
