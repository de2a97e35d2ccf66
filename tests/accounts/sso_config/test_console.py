"""The console pages under /t/<slug>/sso/: admins only (403 for other roles, 404 for other tenants), the
client secret never rendered, the values the IdP needs shown, DNS verification, operator-only actions."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.models import IdentityProvider, RoleMapping, SsoDomain
from apps.accounts.services import sso_config
from apps.audit.models import AuditEvent
from apps.core.confirm import CONFIRMED
from apps.core.context import tenant_context
from apps.tenants.models import Membership, Role, Tenant
from tests.fixtures.auth import login_verified
from tests.fixtures.loopback import loopback_server

pytestmark = pytest.mark.django_db


def url(name: str, tenant: Tenant, pk: Any = None) -> str:
    kwargs: dict[str, Any] = {"tenant_slug": tenant.slug}
    if pk is not None:
        kwargs["pk"] = pk
    return reverse(f"sso-config:{name}", kwargs=kwargs)


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_overview_lists_and_tells_what_is_missing(
    alice_client: Client, tenant_a: Tenant, oidc_a: IdentityProvider
) -> None:
    response = alice_client.get(url("overview", tenant_a))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Acme Okta" in page
    assert "Missing: a verified e-mail domain" in page
    assert "No break-glass admin" in page
    assert "Break-glass admin (platform operators)" not in page  # alice is not an operator
    nav = reverse("sso-config:overview", kwargs={"tenant_slug": tenant_a.slug})
    assert (
        alice_client.get(reverse("console:tenant-home", kwargs={"tenant_slug": tenant_a.slug}))
        .content.decode()
        .count(nav)
    )


def test_every_page_refuses_viewers_and_other_tenants(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, bob: Any, charlie: Any, oidc_a: IdentityProvider
) -> None:
    domain = sso_config.domain_add(tenant=tenant_a, provider=oidc_a, domain="acme.example", actor=None)
    mapping = sso_config.mapping_create(tenant=tenant_a, data={"group": "g", "role": "viewer"}, actor=None)
    pages = [
        ("overview", None, "get"),
        ("provider-create", None, "get"),
        ("provider-edit", oidc_a.pk, "get"),
        ("provider-check", oidc_a.pk, "post"),
        ("provider-delete", oidc_a.pk, "post"),
        ("domain-add", None, "get"),
        ("domain-detail", domain.pk, "get"),
        ("domain-verify", domain.pk, "post"),
        ("domain-mark-verified", domain.pk, "post"),
        ("domain-delete", domain.pk, "post"),
        ("mapping-create", None, "get"),
        ("mapping-edit", mapping.pk, "get"),
        ("mapping-move", mapping.pk, "post"),
        ("mapping-delete", mapping.pk, "post"),
        ("mapping-preview", None, "get"),
        ("enforcement", None, "post"),
        ("break-glass", None, "post"),
    ]
    client.force_login(bob)  # viewer of A
    for name, pk, method in pages:
        assert getattr(client, method)(url(name, tenant_a, pk), CONFIRMED).status_code == 403, name
    login_verified(client, charlie)  # member of B only
    for name, pk, method in pages:
        assert getattr(client, method)(url(name, tenant_a, pk), CONFIRMED).status_code == 404, name
    Membership.objects.filter(user=charlie).update(role=Role.ADMIN)  # admin of B, A's ids in B's pages
    for name, pk, method in pages:
        if pk is not None:
            assert getattr(client, method)(url(name, tenant_b, pk), CONFIRMED).status_code == 404, name
    assert IdentityProvider.objects.filter(pk=oidc_a.pk).exists()
    assert SsoDomain.objects.filter(pk=domain.pk, verified_at__isnull=True).exists()
    assert RoleMapping.objects.filter(pk=mapping.pk).exists()


def test_create_oidc_provider_secret_never_shown(
    alice_client: Client, tenant_a: Tenant, settings: Any, caplog: Any
) -> None:
    settings.HUB_CHANNELS_PUBLIC_URL = "https://hub.example.com"
    secret = "very-secret-client-secret-42"
    form = {
        "name": "Keycloak",
        "is_active": "on",
        "oidc_discovery_url": "https://kc.example.com/realms/acme/.well-known/openid-configuration",
        "oidc_client_id": "hub",
        "oidc_client_secret": secret,
        "oidc_scopes": "email profile",
        "groups_claim": "groups",
        "default_role": "",
        "mfa_values": "mfa\notp",
        "accept_idp_mfa": "on",
    }
    response = alice_client.post(url("provider-create", tenant_a) + "?protocol=oidc", form)
    assert response.status_code == 302
    provider = IdentityProvider.objects.get(tenant=tenant_a, name="Keycloak")
    assert provider.oidc_scopes == "openid email profile" and provider.mfa_values == ["mfa", "otp"]
    assert provider.accept_idp_mfa
    page = alice_client.get(response["Location"]).content.decode()
    assert secret not in page
    assert "https://hub.example.com/accounts/sso/oidc/callback/" in page
    assert "Leave empty to keep the current secret" in page
    # saved again with the secret left blank: kept
    form["oidc_client_secret"] = ""
    form["name"] = "Keycloak EU"
    assert alice_client.post(response["Location"], form).status_code == 302
    provider.refresh_from_db()
    assert provider.name == "Keycloak EU" and bytes(provider.oidc_client_secret or b"") == secret.encode()
    with tenant_context(tenant_a):
        audited = json.dumps(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert secret not in audited
    assert secret not in caplog.text


def test_provider_field_errors_are_shown(alice_client: Client, tenant_a: Tenant) -> None:
    response = alice_client.post(
        url("provider-create", tenant_a) + "?protocol=oidc", {"name": "X", "groups_claim": "g"}
    )
    assert response.status_code == 400
    assert response.context["form"].errors.keys() >= {"oidc_discovery_url", "oidc_client_id"}
    assert alice_client.get(url("provider-create", tenant_a) + "?protocol=ldap").status_code == 404


def test_saml_provider_shows_sp_values_and_rejects_bad_metadata(
    alice_client: Client, tenant_a: Tenant, saml_metadata: str, settings: Any
) -> None:
    settings.HUB_CHANNELS_PUBLIC_URL = "https://hub.example.com"
    bad = alice_client.post(
        url("provider-create", tenant_a) + "?protocol=saml",
        {"name": "Entra", "saml_metadata_xml": "not xml <", "groups_claim": "groups"},
    )
    assert bad.status_code == 400
    assert "not SAML 2.0 identity provider metadata" in bad.content.decode()
    ok = alice_client.post(
        url("provider-create", tenant_a) + "?protocol=saml",
        {"name": "Entra", "saml_metadata_xml": saml_metadata, "groups_claim": "groups", "is_active": "on"},
    )
    assert ok.status_code == 302
    provider = IdentityProvider.objects.get(tenant=tenant_a, name="Entra")
    page = alice_client.get(ok["Location"]).content.decode()
    assert f"https://hub.example.com/accounts/sso/{provider.pk}/saml/acs/" in page
    assert f"https://hub.example.com/accounts/sso/{provider.pk}/saml/metadata/" in page
    assert "oidc_client_secret" not in page


class Discovery(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/.well-known/openid-configuration":
            body = json.dumps(
                {
                    "issuer": "https://idp.test",
                    "authorization_endpoint": "https://idp.test/authorize",
                    "token_endpoint": "https://idp.test/token",
                    "jwks_uri": "https://idp.test/jwks",
                }
            ).encode()
            self.send_response(200)
        elif self.path == "/partial":
            body = b'{"issuer": "https://idp.test"}'
            self.send_response(200)
        else:
            body = b"nope"
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_check_fetches_discovery_through_the_guarded_session(
    alice_client: Client, tenant_a: Tenant, oidc_a: IdentityProvider, settings: Any
) -> None:
    check = url("provider-check", tenant_a, oidc_a.pk)
    with loopback_server(Discovery) as base:
        expectations = [
            ("/.well-known/openid-configuration", "Discovery document found; issuer https://idp.test"),
            ("/partial", "lacks: authorization_endpoint, token_endpoint, jwks_uri"),
            ("/missing", "answered HTTP 404"),
        ]
        for path, expected in expectations:
            IdentityProvider.objects.filter(pk=oidc_a.pk).update(oidc_discovery_url=base + path)
            response = alice_client.post(check, follow=True)
            assert response.status_code == 200
            assert any(expected in m for m in _messages(response)), _messages(response)
        settings.HUB_CONNECTOR_ALLOW_HOSTS = []  # loopback is a private address like any other
        IdentityProvider.objects.filter(pk=oidc_a.pk).update(oidc_discovery_url=base + expectations[0][0])
        response = alice_client.post(check, follow=True)
        assert any("non-public address" in m for m in _messages(response)), _messages(response)


def test_domain_add_shows_the_txt_record_and_verifies(
    alice_client: Client, tenant_a: Tenant, oidc_a: IdentityProvider, dns_stub: Any
) -> None:
    bad = alice_client.post(
        url("domain-add", tenant_a), {"domain": "*.acme.example", "identity_provider": oidc_a.pk}
    )
    assert bad.status_code == 400 and "Wildcards are not allowed" in bad.content.decode()
    suffix = alice_client.post(
        url("domain-add", tenant_a), {"domain": "co.uk", "identity_provider": oidc_a.pk}
    )
    assert suffix.status_code == 400 and "public suffix" in suffix.content.decode()
    response = alice_client.post(
        url("domain-add", tenant_a), {"domain": "ACME.example", "identity_provider": oidc_a.pk}
    )
    assert response.status_code == 302
    domain = SsoDomain.objects.get(tenant=tenant_a)
    assert domain.domain == "acme.example"
    page = alice_client.get(response["Location"]).content.decode()
    assert "_hub-challenge.acme.example" in page and domain.verification_token in page
    missing = alice_client.post(url("domain-verify", tenant_a, domain.pk), follow=True)
    assert any("No TXT record found" in m for m in _messages(missing))
    dns_stub.records["_hub-challenge.acme.example"] = [domain.verification_token]
    found = alice_client.post(url("domain-verify", tenant_a, domain.pk), follow=True)
    assert any("The domain is verified." in m for m in _messages(found))
    domain.refresh_from_db()
    assert domain.verified_at is not None


def test_operator_marks_verified_and_designates_break_glass(
    client: Client,
    alice_client: Client,
    tenant_a: Tenant,
    alice: Any,
    bob: Any,
    operator: Any,
    oidc_a: IdentityProvider,
) -> None:
    domain = sso_config.domain_add(tenant=tenant_a, provider=oidc_a, domain="acme.example", actor=alice)
    assert alice_client.post(url("domain-mark-verified", tenant_a, domain.pk)).status_code == 403
    assert alice_client.post(url("break-glass", tenant_a), {"user": alice.pk}).status_code == 403
    operator_client = Client()
    login_verified(operator_client, operator)
    assert (
        "Mark verified (operator)"
        in operator_client.get(url("domain-detail", tenant_a, domain.pk)).content.decode()
    )
    operator_client.post(url("domain-mark-verified", tenant_a, domain.pk))
    domain.refresh_from_db()
    assert domain.verified_at is not None
    overview = operator_client.get(url("overview", tenant_a)).content.decode()
    assert "Break-glass admin (platform operators)" in overview
    refused = operator_client.post(
        url("break-glass", tenant_a), {"user": bob.pk}, follow=True
    )  # not an admin
    assert not Membership.objects.filter(is_break_glass=True).exists()
    assert refused.status_code == 200
    operator_client.post(url("break-glass", tenant_a), {"user": alice.pk})
    assert Membership.objects.get(tenant=tenant_a, user=alice).is_break_glass
    with tenant_context(tenant_a):
        assert AuditEvent.objects.filter(action="sso.break_glass_changed", actor_id=operator.pk).count() == 1
        assert AuditEvent.objects.filter(action="sso.domain_verified", actor_id=operator.pk).count() == 1


def test_enforcement_toggle(
    alice_client: Client, tenant_a: Tenant, oidc_a: IdentityProvider, alice: Any
) -> None:
    refused = alice_client.post(url("enforcement", tenant_a), {"sso_enforced": "on"}, follow=True)
    assert any("verified domain first" in m for m in _messages(refused))
    domain = sso_config.domain_add(tenant=tenant_a, provider=oidc_a, domain="acme.example", actor=alice)
    SsoDomain.objects.filter(pk=domain.pk).update(verified_at="2026-01-01T00:00:00Z")
    unconfirmed = alice_client.post(url("enforcement", tenant_a), {"sso_enforced": "on"}, follow=True)
    assert any("No break-glass admin is designated" in m for m in _messages(unconfirmed))
    tenant_a.refresh_from_db()
    assert not tenant_a.sso_enforced
    done = alice_client.post(
        url("enforcement", tenant_a), {"sso_enforced": "on", "confirm_without_break_glass": "on"}
    )
    assert done.status_code == 302
    tenant_a.refresh_from_db()
    assert tenant_a.sso_enforced
    # alice signed in with a password: from now on the tenant's pages send her to its IdP
    blocked = alice_client.get(url("overview", tenant_a))
    assert blocked.status_code == 302
    assert blocked["Location"].startswith(
        reverse("accounts:sso-tenant", kwargs={"organisation": tenant_a.slug})
    )


def test_mappings_pages(alice_client: Client, tenant_a: Tenant, oidc_a: IdentityProvider) -> None:
    assert (
        alice_client.post(url("mapping-create", tenant_a), {"group": "admins", "role": "admin"}).status_code
        == 302
    )
    bad = alice_client.post(url("mapping-create", tenant_a), {"group": "x", "role": "admin", "locales": "de"})
    assert bad.status_code == 400 and "Only localization editors" in bad.content.decode()
    assert (
        alice_client.post(
            url("mapping-create", tenant_a),
            {"group": "editors", "role": "localization_editor", "locales": "de, fr"},
        ).status_code
        == 302
    )
    editors = RoleMapping.objects.get(tenant=tenant_a, group="editors")
    assert editors.locales == ["de", "fr"] and editors.position == 1
    alice_client.post(url("mapping-move", tenant_a, editors.pk), {"direction": "up"})
    assert list(RoleMapping.objects.filter(tenant=tenant_a).values_list("group", flat=True)) == [
        "editors",
        "admins",
    ]
    preview = alice_client.get(url("mapping-preview", tenant_a), {"groups": "admins\neditors"})
    assert preview.status_code == 200
    assert preview.context["grant"] == ("localization_editor", ["de", "fr"], [])
    none = alice_client.get(url("mapping-preview", tenant_a), {"groups": "nobody"})
    assert none.context["grant"] is None and "No access" in none.content.decode()
    IdentityProvider.objects.filter(pk=oidc_a.pk).update(default_role=Role.VIEWER)
    default = alice_client.get(
        url("mapping-preview", tenant_a), {"groups": "nobody", "identity_provider": str(oidc_a.pk)}
    )
    assert default.context["grant"] == ("viewer", [], [])
    assert alice_client.post(url("mapping-delete", tenant_a, editors.pk), CONFIRMED).status_code == 302
    assert not RoleMapping.objects.filter(pk=editors.pk).exists()


def test_delete_provider_needs_confirmation(
    alice_client: Client, tenant_a: Tenant, oidc_a: IdentityProvider
) -> None:
    assert alice_client.post(url("provider-delete", tenant_a, oidc_a.pk)).status_code == 400
    assert IdentityProvider.objects.filter(pk=oidc_a.pk).exists()
    assert alice_client.post(url("provider-delete", tenant_a, oidc_a.pk), CONFIRMED).status_code == 302
    assert not IdentityProvider.objects.filter(pk=oidc_a.pk).exists()


def _queries(client: Client, path: str) -> int:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connections["default"]) as captured:
        assert client.get(path).status_code == 200
    return len(captured)


def test_overview_and_api_lists_make_no_query_per_row(
    alice_client: Client, alice_api: Any, tenant_a: Tenant, alice: Any
) -> None:
    def add(count: int, offset: int) -> None:
        for i in range(offset, offset + count):
            provider = sso_config.provider_create(
                tenant=tenant_a,
                data={"protocol": "oidc", "name": f"P{i}", "oidc_discovery_url": f"https://idp{i}.example.com/x",
                      "oidc_client_id": "c", "oidc_client_secret": "secret-value-1"},
                actor=alice,
            )  # fmt: skip
            sso_config.domain_add(tenant=tenant_a, provider=provider, domain=f"d{i}.example", actor=alice)
            sso_config.mapping_create(tenant=tenant_a, data={"group": f"g{i}", "role": "viewer"}, actor=alice)

    paths = [
        url("overview", tenant_a),
        f"/api/v1/tenants/{tenant_a.slug}/identity-providers/",
        f"/api/v1/tenants/{tenant_a.slug}/sso-domains/",
        f"/api/v1/tenants/{tenant_a.slug}/role-mappings/",
    ]
    add(2, 0)
    for path in paths:  # warm up: the token's last use is recorded once, the session once
        (alice_client if path == paths[0] else alice_api).get(path)
    before = [_queries(alice_client, paths[0]), *(_queries(alice_api, p) for p in paths[1:])]
    add(5, 2)
    after = [_queries(alice_client, paths[0]), *(_queries(alice_api, p) for p in paths[1:])]
    assert after == before
