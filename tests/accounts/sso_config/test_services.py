"""The SSO configuration services: validation, the secret's handling, domains and DNS, mappings, enforcement,
break-glass, and their audit rows."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

import pytest

from apps.accounts.models import IdentityProvider, RoleMapping, SsoDomain
from apps.accounts.services import sso_config
from apps.accounts.services.sso import role_grant
from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.core.errors import Conflict, ValidationFailed
from apps.tenants.models import Membership, Role, Tenant
from tests.fixtures.loopback import loopback_server

pytestmark = pytest.mark.django_db
OTHER_OIDC = {
    "protocol": "oidc",
    "name": "B",
    "oidc_discovery_url": "https://b.example/x",
    "oidc_client_id": "c",
    "oidc_client_secret": "sec-b-1234",
}


def _events(tenant: Tenant, prefix: str = "sso.") -> list[AuditEvent]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action__startswith=prefix).order_by("seq"))


def _verified(provider: IdentityProvider, name: str = "acme.example") -> SsoDomain:
    domain = sso_config.domain_add(tenant=provider.tenant, provider=provider, domain=name, actor=None)
    SsoDomain.objects.filter(pk=domain.pk).update(verified_at="2026-01-01T00:00:00Z")
    domain.refresh_from_db()
    return domain


# --- providers --------------------------------------------------------------------------------------------
def test_oidc_secret_is_sealed_censored_in_audit_and_kept_when_blank(
    tenant_a: Tenant, alice: Any, oidc_a: IdentityProvider, client_secret: str
) -> None:
    stored = IdentityProvider.objects.get(pk=oidc_a.pk)
    assert bytes(stored.oidc_client_secret or b"") == client_secret.encode()
    sso_config.provider_update(provider=stored, data={"name": "Okta", "oidc_client_secret": ""}, actor=alice)
    stored.refresh_from_db()
    assert stored.name == "Okta"
    assert bytes(stored.oidc_client_secret or b"") == client_secret.encode()  # blank: kept
    sso_config.provider_update(provider=stored, data={"oidc_client_secret": "new-secret-9999"}, actor=alice)
    stored.refresh_from_db()
    assert bytes(stored.oidc_client_secret or b"") == b"new-secret-9999"
    events = _events(tenant_a)
    assert [e.action for e in events] == [
        "sso.provider_created",
        "sso.provider_updated",
        "sso.provider_updated",
    ]
    dumped = json.dumps([e.changes for e in events])
    assert client_secret not in dumped and "new-secret-9999" not in dumped
    assert events[0].changes["oidc_client_secret"] != client_secret
    assert events[1].changes == {"name": ["Acme Okta", "Okta"]}


def test_secret_must_be_entered_again_for_another_host(
    alice: Any, oidc_a: IdentityProvider, client_secret: str
) -> None:
    moved = {"oidc_discovery_url": "https://evil.example/.well-known/openid-configuration"}
    with pytest.raises(ValidationFailed) as caught:
        sso_config.provider_update(provider=oidc_a, data=moved, actor=alice)
    assert "enter the client secret again" in caught.value.errors["oidc_client_secret"][0]
    same_host = {"oidc_discovery_url": "https://idp.example.com/realms/b/.well-known/openid-configuration"}
    sso_config.provider_update(provider=oidc_a, data=same_host, actor=alice)
    sso_config.provider_update(
        provider=oidc_a, data={**moved, "oidc_client_secret": "fresh-secret-1"}, actor=alice
    )
    oidc_a.refresh_from_db()
    assert bytes(oidc_a.oidc_client_secret or b"") == b"fresh-secret-1"


def test_provider_field_errors(tenant_a: Tenant, alice: Any, oidc_a: IdentityProvider) -> None:
    with pytest.raises(ValidationFailed) as caught:
        sso_config.provider_create(tenant=tenant_a, data={"protocol": "oidc", "name": "X"}, actor=alice)
    assert set(caught.value.errors) == {"oidc_discovery_url", "oidc_client_id", "oidc_client_secret"}
    with pytest.raises(ValidationFailed) as caught:
        sso_config.provider_create(
            tenant=tenant_a,
            data={
                "protocol": "oidc",
                "name": "Acme Okta",
                "oidc_discovery_url": "ftp://x",
                "default_role": "boss",
            },
            actor=alice,
        )
    assert {"name", "oidc_discovery_url", "default_role"} <= set(caught.value.errors)
    with pytest.raises(ValidationFailed) as caught:
        sso_config.provider_create(tenant=tenant_a, data={"protocol": "ldap", "name": "Y"}, actor=alice)
    assert "protocol" in caught.value.errors


def test_saml_metadata_is_parsed(tenant_a: Tenant, alice: Any, saml_metadata: str) -> None:
    provider = sso_config.provider_create(
        tenant=tenant_a,
        data={"protocol": "saml", "name": "ADFS", "saml_metadata_xml": saml_metadata},
        actor=alice,
    )
    assert provider.protocol == "saml" and provider.saml_metadata_xml.startswith("<?xml")
    audit = _events(tenant_a)[0].changes
    assert "characters" in audit["saml_metadata_xml"]  # the XML is not copied into the audit chain
    for bad in ("<not-metadata/>", "garbage <", saml_metadata.replace("ds:X509Certificate", "ds:Nope")):
        with pytest.raises(ValidationFailed) as caught:
            sso_config.provider_create(
                tenant=tenant_a, data={"protocol": "saml", "name": "B", "saml_metadata_xml": bad}, actor=alice
            )
        assert "saml_metadata_xml" in caught.value.errors
    with pytest.raises(ValidationFailed) as caught:
        sso_config.provider_create(tenant=tenant_a, data={"protocol": "saml", "name": "C"}, actor=alice)
    assert "saml_metadata_url" in caught.value.errors


# --- domains ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Acme.Example.", "acme.example"),
        ("@acme.example", "acme.example"),
        ("Bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_domain_normalised(raw: str, expected: str) -> None:
    assert sso_config.domain_normalise(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "*.acme.example",
        "com",
        "co.uk",
        "github.io",
        "acme",
        "http://acme.example/",
        "a b.example",
        "1.2.3.4",
    ],
)
def test_domain_refused(raw: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        sso_config.domain_normalise(raw)
    assert caught.value.errors["domain"]


def test_domain_verified_by_another_tenant_is_refused(
    tenant_a: Tenant, tenant_b: Tenant, alice: Any, oidc_a: IdentityProvider
) -> None:
    other = sso_config.provider_create(tenant=tenant_b, data=OTHER_OIDC, actor=None)
    _verified(other, "shared.example")
    with pytest.raises(ValidationFailed) as caught:
        sso_config.domain_add(tenant=tenant_a, provider=oidc_a, domain="SHARED.example", actor=alice)
    assert "another organisation" in caught.value.errors["domain"][0]
    assert tenant_b.name not in caught.value.errors["domain"][0]
    with pytest.raises(ValidationFailed):  # another tenant's provider
        sso_config.domain_add(tenant=tenant_a, provider=other, domain="a.example", actor=alice)


def test_dns_verification(tenant_a: Tenant, alice: Any, oidc_a: IdentityProvider, dns_stub: Any) -> None:
    domain = sso_config.domain_add(tenant=tenant_a, provider=oidc_a, domain="acme.example", actor=alice)
    name, token = sso_config.domain_challenge(domain)
    assert name == "_hub-challenge.acme.example" and len(token) >= 24

    missing = sso_config.domain_verify(domain=domain, actor=alice)
    assert not missing.ok and "No TXT record" in missing.message

    dns_stub.records[name] = ["v=spf1 -all", "someone-else"]
    wrong = sso_config.domain_verify(domain=domain, actor=alice)
    assert not wrong.ok and "none holds the token" in wrong.message

    dns_stub.records[name] = ["other", token]
    found = sso_config.domain_verify(domain=domain, actor=alice)
    assert found.ok
    domain.refresh_from_db()
    assert domain.verified_at is not None
    assert dns_stub.queries.count(name) == 3
    assert [(e.action, e.outcome) for e in _events(tenant_a, "sso.domain_verif")] == [
        ("sso.domain_verify_failed", "failure"),
        ("sso.domain_verify_failed", "failure"),
        ("sso.domain_verified", "success"),
    ]


def test_dns_resolver_down_is_a_clear_message(
    tenant_a: Tenant, alice: Any, oidc_a: IdentityProvider, dead_resolver: None
) -> None:
    domain = sso_config.domain_add(tenant=tenant_a, provider=oidc_a, domain="acme.example", actor=alice)
    result = sso_config.domain_verify(domain=domain, actor=alice)
    assert not result.ok and "resolver did not answer" in result.message
    domain.refresh_from_db()
    assert domain.verified_at is None


def test_verified_elsewhere_meanwhile_is_refused_at_verify(
    tenant_a: Tenant, tenant_b: Tenant, alice: Any, oidc_a: IdentityProvider, dns_stub: Any
) -> None:
    domain = sso_config.domain_add(tenant=tenant_a, provider=oidc_a, domain="race.example", actor=alice)
    other = sso_config.provider_create(tenant=tenant_b, data=OTHER_OIDC, actor=None)
    _verified(other, "race.example")
    name, token = sso_config.domain_challenge(domain)
    dns_stub.records[name] = [token]
    result = sso_config.domain_verify(domain=domain, actor=alice)
    assert not result.ok and "another organisation" in result.message


def test_mark_verified_is_for_operators(
    tenant_a: Tenant, alice: Any, operator: Any, oidc_a: IdentityProvider
) -> None:
    domain = sso_config.domain_add(tenant=tenant_a, provider=oidc_a, domain="acme.example", actor=alice)
    with pytest.raises(sso_config.Forbidden):
        sso_config.domain_mark_verified(domain=domain, actor=alice)
    sso_config.domain_mark_verified(domain=domain, actor=operator)
    domain.refresh_from_db()
    assert domain.verified_at is not None
    event = _events(tenant_a, "sso.domain_verified")[0]
    assert event.changes == {"method": "operator"} and event.actor_id == operator.pk


# --- mappings ---------------------------------------------------------------------------------------------
def test_mappings_order_move_delete_and_preview(tenant_a: Tenant, alice: Any) -> None:
    admins = sso_config.mapping_create(
        tenant=tenant_a, data={"group": "admins", "role": "admin"}, actor=alice
    )
    editors = sso_config.mapping_create(
        tenant=tenant_a,
        data={"group": "editors", "role": "localization_editor", "locales": ["de", "fr"], "regions": ["eu"]},
        actor=alice,
    )
    viewers = sso_config.mapping_create(tenant=tenant_a, data={"group": "all", "role": "viewer"}, actor=alice)
    assert [admins.position, editors.position, viewers.position] == [0, 1, 2]
    assert role_grant(tenant=tenant_a, groups={"all", "editors"}) == (
        "localization_editor",
        ["de", "fr"],
        ["eu"],
    )
    sso_config.mapping_move(mapping=viewers, offset=-5, actor=alice)
    assert list(RoleMapping.objects.filter(tenant=tenant_a).values_list("group", flat=True)) == [
        "all",
        "admins",
        "editors",
    ]
    assert role_grant(tenant=tenant_a, groups={"all", "editors"}) == ("viewer", [], [])
    sso_config.mapping_delete(mapping=viewers, actor=alice)
    assert list(RoleMapping.objects.filter(tenant=tenant_a).values_list("group", "position")) == [
        ("admins", 0),
        ("editors", 1),
    ]
    actions = [e.action for e in _events(tenant_a, "sso.mapping")]
    assert actions == ["sso.mapping_created"] * 3 + ["sso.mapping_moved", "sso.mapping_deleted"]


def test_mapping_field_errors(tenant_a: Tenant, alice: Any) -> None:
    sso_config.mapping_create(tenant=tenant_a, data={"group": "admins", "role": "admin"}, actor=alice)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"group": "", "role": "admin"}, "group"),
        ({"group": "admins", "role": "admin"}, "group"),
        ({"group": "x", "role": "king"}, "role"),
        ({"group": "x", "role": "admin", "locales": ["de"]}, "locales"),
        ({"group": "x", "role": "localization_editor", "locales": ["not a locale!"]}, "locales"),
        ({"group": "x", "role": "localization_editor", "regions": ["mars"]}, "regions"),
    ]
    for data, field in cases:
        with pytest.raises(ValidationFailed) as caught:
            sso_config.mapping_create(tenant=tenant_a, data=data, actor=alice)
        assert field in caught.value.errors, (data, caught.value.errors)


# --- enforcement and break-glass --------------------------------------------------------------------------
def test_enforcement_preconditions(tenant_a: Tenant, alice: Any, oidc_a: IdentityProvider) -> None:
    with pytest.raises(ValidationFailed) as caught:
        sso_config.enforcement_set(tenant=tenant_a, enforced=True, actor=alice)
    assert "sso_enforced" in caught.value.errors
    domain = _verified(oidc_a)
    with pytest.raises(ValidationFailed) as caught:
        sso_config.enforcement_set(tenant=tenant_a, enforced=True, actor=alice)
    assert "confirm_without_break_glass" in caught.value.errors
    tenant_a.refresh_from_db()
    assert not tenant_a.sso_enforced
    sso_config.enforcement_set(tenant=tenant_a, enforced=True, confirm_without_break_glass=True, actor=alice)
    tenant_a.refresh_from_db()
    assert tenant_a.sso_enforced
    # what enforcement rests on cannot go away underneath it
    with pytest.raises(Conflict):
        sso_config.domain_delete(domain=domain, actor=alice)
    with pytest.raises(Conflict):
        sso_config.provider_delete(provider=oidc_a, actor=alice)
    with pytest.raises(Conflict):
        sso_config.provider_update(provider=oidc_a, data={"is_active": False}, actor=alice)
    sso_config.enforcement_set(tenant=tenant_a, enforced=False, actor=alice)
    sso_config.provider_delete(provider=oidc_a, actor=alice)
    assert not SsoDomain.objects.filter(tenant=tenant_a).exists()
    changes = [e.changes for e in _events(tenant_a, "sso.enforcement_changed")]
    assert changes == [
        {"sso_enforced": [False, True], "confirmed_without_break_glass": True},
        {"sso_enforced": [True, False]},
    ]


def test_break_glass_is_operator_only_one_admin(
    tenant_a: Tenant, alice: Any, bob: Any, operator: Any, member: Any, oidc_a: IdentityProvider
) -> None:
    with pytest.raises(sso_config.Forbidden):
        sso_config.break_glass_set(tenant=tenant_a, user_id=alice.pk, actor=alice)
    with pytest.raises(ValidationFailed):
        sso_config.break_glass_set(tenant=tenant_a, user_id=bob.pk, actor=operator)  # a viewer
    sso_config.break_glass_set(tenant=tenant_a, user_id=alice.pk, actor=operator)
    second = member("dora", Role.ADMIN, tenant=tenant_a)
    sso_config.break_glass_set(tenant=tenant_a, user_id=second.pk, actor=operator)
    assert list(
        Membership.objects.filter(tenant=tenant_a, is_break_glass=True).values_list("user_id", flat=True)
    ) == [second.pk]
    _verified(oidc_a)
    sso_config.enforcement_set(tenant=tenant_a, enforced=True, actor=alice)  # no confirmation needed now
    sso_config.break_glass_set(tenant=tenant_a, user_id=None, actor=operator)
    assert not Membership.objects.filter(tenant=tenant_a, is_break_glass=True).exists()
    changes = [e.changes for e in _events(tenant_a, "sso.break_glass_changed")]
    assert changes == [
        {"break_glass": [None, "alice"]},
        {"break_glass": ["alice", "dora"]},
        {"break_glass": ["dora", None]},
    ]


# --- the "check" action ----------------------------------------------------------------------------------
class _Documents(BaseHTTPRequestHandler):
    """Serves `routes` (path → body); anything else is a 404."""

    routes: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.routes.get(self.path)
        self.send_response(200 if body is not None else 404)
        body = body if body is not None else b"missing"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_check_saml_metadata_url_oversize_and_credentials_in_url(
    tenant_a: Tenant, alice: Any, oidc_a: IdentityProvider, saml_metadata: str
) -> None:
    _Documents.routes = {"/metadata": saml_metadata.encode(), "/huge": b"x" * 1_100_000}
    with loopback_server(_Documents) as base:
        saml = sso_config.provider_create(
            tenant=tenant_a,
            data={"protocol": "saml", "name": "Keycloak", "saml_metadata_url": f"{base}/metadata"},
            actor=alice,
        )
        ok = sso_config.provider_check(provider=saml)
        assert ok.ok and "https://idp.example.com/saml" in ok.message
        IdentityProvider.objects.filter(pk=saml.pk).update(saml_metadata_url=f"{base}/huge")
        saml.refresh_from_db()
        huge = sso_config.provider_check(provider=saml)
        assert not huge.ok and "larger than 1 MB" in huge.message
        with_credentials = base.replace("http://", "http://user:pa55word@") + "/nothing"
        IdentityProvider.objects.filter(pk=oidc_a.pk).update(oidc_discovery_url=with_credentials)
        oidc_a.refresh_from_db()
        missing = sso_config.provider_check(provider=oidc_a)
        assert not missing.ok and "HTTP 404" in missing.message and "pa55word" not in missing.message
