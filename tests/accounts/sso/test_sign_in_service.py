"""`services.sso.sso_sign_in` driven with claims directly: just-in-time accounts, linking, refusals, the role
mapping (first match, default, none), break-glass, IdP MFA, the session and the audit trail; then what the
session lets in: SSO enforcement (pages and API), `sessions_end`, and `membership_sync`'s audit rows."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import Client
from django.urls import reverse

from apps.accounts.models import (
    ExternalIdentity,
    IdentityProvider,
    RoleMapping,
    ScimGroup,
    ScimUser,
    SsoDomain,
)
from apps.accounts.services.sso import SsoClaims, SsoRefusal, SsoRefused, sessions_end
from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.tenants.models import Membership, MembershipSource, Role, Tenant
from apps.tenants.services import membership_sync
from apps.tenants.sso import SSO_SESSION_KEY
from tests.fixtures.auth import enroll, login_verified

pytestmark = pytest.mark.django_db
User = get_user_model()
ANN = SsoClaims(subject="sub-ann", email="ann@acme.example", given_name="Ann", family_name="Lee")


def with_groups(claims: SsoClaims, *groups: str, **fields: Any) -> SsoClaims:
    return SsoClaims(**{**claims.__dict__, "groups": groups, **fields})


def audit(tenant: Tenant, action: str) -> list[AuditEvent]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def tenant_home(tenant: Tenant) -> str:
    return reverse("console:tenant-home", kwargs={"tenant_slug": tenant.slug})


@pytest.fixture
def mappings(tenant_a: Tenant) -> Tenant:
    """acme-admins → admin, acme-l10n → localization editor (de), acme-staff → viewer; in that order."""
    RoleMapping.objects.create(tenant=tenant_a, group="acme-staff", role=Role.VIEWER, position=30)
    RoleMapping.objects.create(tenant=tenant_a, group="acme-admins", role=Role.ADMIN, position=10)
    RoleMapping.objects.create(
        tenant=tenant_a, group="acme-l10n", role=Role.LOCALIZATION_EDITOR, locales=["de"], position=20
    )
    return tenant_a


# --- just-in-time accounts and linking ---------------------------------------------------------------------
def test_first_sign_in_creates_the_user_membership_identity_session_and_audit(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant, client: Client
) -> None:
    result = sso_login(idp_a, with_groups(ANN, "acme-staff", "other"), client=client)
    user = result.user
    assert (user.username, user.email, user.first_name, user.last_name) == (
        "ann@acme.example",
        "ann@acme.example",
        "Ann",
        "Lee",
    )
    assert not user.has_usable_password()
    membership = Membership.objects.get(user=user, tenant=mappings)
    assert (membership.role, membership.source) == (Role.VIEWER, MembershipSource.SSO)
    identity = ExternalIdentity.objects.get(user=user)
    assert (identity.identity_provider, identity.subject) == (idp_a, "sub-ann")
    assert identity.groups == ["acme-staff", "other"] and identity.last_sign_in_at is not None
    assert client.session[SSO_SESSION_KEY] == {"tenant": mappings.pk, "provider": idp_a.pk, "mfa": False}
    assert client.session["_auth_user_id"] == str(user.pk)
    [login] = audit(mappings, "security.sso_login")
    assert login.outcome == "success" and login.target_id == str(user.pk)
    assert login.changes["role"] == "viewer" and login.changes["provider_id"] == idp_a.pk
    assert "ann@acme.example" not in str(login.changes)
    [added] = audit(mappings, "member.added")
    assert added.changes["role"] == [None, "viewer"] and added.changes["reason"] == "sso_sign_in"
    assert client.get(tenant_home(mappings)).status_code == 200  # a viewer needs no second factor


def test_the_next_sign_in_finds_the_same_user_by_subject(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant
) -> None:
    first = sso_login(idp_a, with_groups(ANN, "acme-staff")).user
    # the IdP changed the address: the subject still identifies the user
    again = sso_login(idp_a, with_groups(ANN, "acme-staff", email="ann.lee@acme.example")).user
    assert again.pk == first.pk
    assert User.objects.filter(email__icontains="acme.example").count() == 1
    assert len(audit(mappings, "member.added")) == 1  # unchanged membership: no second audit row


def test_an_address_in_unicode_matches_its_verified_punycode_domain(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant
) -> None:
    SsoDomain.objects.filter(identity_provider=idp_a).update(domain="xn--bcher-kva.example")
    user = sso_login(idp_a, with_groups(ANN, "acme-staff", email="ann@bücher.example")).user
    assert Membership.objects.filter(user=user, tenant=mappings).exists()


def test_an_existing_account_with_the_verified_address_is_linked_not_duplicated(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant
) -> None:
    existing = User.objects.create_user("ann-local", email="Ann@Acme.example", password="local-pass-123!")
    result = sso_login(idp_a, with_groups(ANN, "acme-admins"))
    assert result.user.pk == existing.pk
    assert result.user.has_usable_password()  # linking does not take the local password away
    assert ExternalIdentity.objects.filter(user=existing, subject="sub-ann").exists()


def test_a_second_subject_for_an_already_linked_address_is_refused(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant
) -> None:
    sso_login(idp_a, with_groups(ANN, "acme-staff"))
    with pytest.raises(SsoRefused) as refused:
        sso_login(idp_a, with_groups(ANN, "acme-staff", subject="someone-else"))
    assert refused.value.reason is SsoRefusal.ACCOUNT_CONFLICT
    assert ExternalIdentity.objects.count() == 1


# --- refusals ----------------------------------------------------------------------------------------------
def _refusal(sso_login: Any, provider: IdentityProvider, claims: SsoClaims) -> SsoRefusal:
    with pytest.raises(SsoRefused) as refused:
        sso_login(provider, claims)
    return refused.value.reason


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"email": "ann@unverified.example"}, SsoRefusal.DOMAIN_NOT_VERIFIED),
        ({"email": "ann@sub.acme.example"}, SsoRefusal.DOMAIN_NOT_VERIFIED),
        ({"email_verified": False}, SsoRefusal.EMAIL_MISSING),
        ({"email": ""}, SsoRefusal.EMAIL_MISSING),
        ({"email": "not-an-address"}, SsoRefusal.EMAIL_MISSING),
    ],
)
def test_no_account_is_made_or_linked_without_a_verified_address_in_a_verified_domain(
    sso_login: Any, idp_a: IdentityProvider, tenant_a: Tenant, fields: dict[str, Any], reason: SsoRefusal
) -> None:
    idp_a.default_role = Role.VIEWER
    idp_a.save()
    assert _refusal(sso_login, idp_a, with_groups(ANN, **fields)) is reason
    assert not User.objects.filter(email__icontains="ann").exists()
    assert not ExternalIdentity.objects.exists()
    [denied] = audit(tenant_a, "security.sso_login")
    assert denied.outcome == "denied" and denied.changes["reason"] == reason.value


def test_another_tenants_idp_cannot_take_over_an_account_of_a_domain_it_did_not_verify(
    sso_login: Any, idp_a: IdentityProvider, idp_b: IdentityProvider, alice: Any, tenant_b: Tenant
) -> None:
    alice.email = "alice@acme.example"
    alice.save()
    claims = SsoClaims(subject="evil", email="alice@acme.example")
    assert _refusal(sso_login, idp_b, claims) is SsoRefusal.DOMAIN_NOT_VERIFIED
    assert not ExternalIdentity.objects.filter(user=alice).exists()
    assert not Membership.objects.filter(user=alice, tenant=tenant_b).exists()


def test_inactive_provider_and_inactive_tenant_are_refused(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant
) -> None:
    claims = with_groups(ANN, "acme-staff")
    IdentityProvider.objects.filter(pk=idp_a.pk).update(is_active=False)
    idp_a.refresh_from_db()
    assert _refusal(sso_login, idp_a, claims) is SsoRefusal.PROVIDER_INACTIVE
    IdentityProvider.objects.filter(pk=idp_a.pk).update(is_active=True)
    Tenant.objects.filter(pk=mappings.pk).update(is_active=False)
    idp_a = IdentityProvider.objects.select_related("tenant").get(pk=idp_a.pk)
    assert _refusal(sso_login, idp_a, claims) is SsoRefusal.TENANT_INACTIVE
    assert not User.objects.filter(email="ann@acme.example").exists()


def test_a_scim_deactivated_or_inactive_user_is_refused(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant
) -> None:
    user = sso_login(idp_a, with_groups(ANN, "acme-staff")).user
    scim = ScimUser.objects.create(tenant=mappings, user=user, active=False)
    assert _refusal(sso_login, idp_a, with_groups(ANN, "acme-staff")) is SsoRefusal.USER_INACTIVE
    scim.active = True
    scim.save()
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert _refusal(sso_login, idp_a, with_groups(ANN, "acme-staff")) is SsoRefusal.USER_INACTIVE


def test_refused_message_is_safe_to_show(sso_login: Any, idp_a: IdentityProvider, mappings: Tenant) -> None:
    with pytest.raises(SsoRefused) as refused:
        sso_login(idp_a, with_groups(ANN, "no-such-group"))
    assert "groups" in str(refused.value) and "ann@" not in str(refused.value)


# --- role mapping ------------------------------------------------------------------------------------------
def test_first_matching_mapping_by_position_wins(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant
) -> None:
    result = sso_login(idp_a, with_groups(ANN, "acme-staff", "acme-l10n", "acme-admins"))
    assert result.membership.role == Role.ADMIN
    result = sso_login(idp_a, with_groups(ANN, "acme-staff", "acme-l10n"))
    assert (result.membership.role, result.membership.locales) == (Role.LOCALIZATION_EDITOR, ["de"])


def test_default_role_applies_when_no_group_matches(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant
) -> None:
    idp_a.default_role = Role.VIEWER
    idp_a.save()
    assert sso_login(idp_a, with_groups(ANN, "unmapped")).membership.role == Role.VIEWER


def test_scim_groups_count_like_claimed_groups(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant
) -> None:
    user = sso_login(idp_a, with_groups(ANN, "acme-staff")).user
    scim = ScimUser.objects.create(tenant=mappings, user=user)
    ScimGroup.objects.create(tenant=mappings, display_name="acme-admins").members.add(scim)
    assert sso_login(idp_a, with_groups(ANN)).membership.role == Role.ADMIN


def test_role_changes_at_the_next_sign_in_and_no_group_removes_access(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant
) -> None:
    user = sso_login(idp_a, with_groups(ANN, "acme-staff")).user
    sso_login(idp_a, with_groups(ANN, "acme-admins"))
    assert Membership.objects.get(user=user).role == Role.ADMIN
    [changed] = audit(mappings, "member.role_changed")
    assert changed.changes["role"] == ["viewer", "admin"] and changed.changes["reason"] == "sso_sign_in"

    assert _refusal(sso_login, idp_a, with_groups(ANN, "left-the-company")) is SsoRefusal.NO_ROLE
    assert not Membership.objects.filter(user=user, tenant=mappings).exists()
    [removed] = audit(mappings, "member.removed")
    assert removed.changes == {"role": "admin", "source": "sso", "reason": "sso_sign_in"}
    denied = audit(mappings, "security.sso_login")[-1]
    assert denied.outcome == "denied" and denied.changes["reason"] == "no_role"


def test_the_break_glass_admin_is_never_touched(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant, alice: Any
) -> None:
    alice.email = "alice@acme.example"
    alice.save()
    Membership.objects.filter(user=alice, tenant=mappings).update(is_break_glass=True)
    claims = SsoClaims(subject="sub-alice", email="alice@acme.example", groups=("acme-staff",))
    result = sso_login(idp_a, claims)
    membership = Membership.objects.get(user=alice, tenant=mappings)
    assert (membership.role, membership.is_break_glass, membership.source) == (Role.ADMIN, True, "local")
    assert result.membership.pk == membership.pk
    sso_login(idp_a, SsoClaims(subject="sub-alice", email="alice@acme.example", groups=()))
    assert Membership.objects.filter(user=alice, tenant=mappings, role=Role.ADMIN).exists()
    assert not audit(mappings, "member.removed") and not audit(mappings, "member.role_changed")


# --- the IdP's MFA -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("accept", "values", "methods", "expected"),
    [
        (False, [], ("pwd", "mfa"), False),
        (True, [], ("pwd", "mfa"), True),
        (True, [], ("pwd",), False),
        (True, [], (), False),
        (True, ["urn:acme:loa:2"], ("mfa",), False),  # a configured list replaces the usual values
        (True, ["urn:acme:loa:2"], ("urn:acme:loa:2",), True),
    ],
)
def test_idp_mfa_is_accepted_only_when_allowed_and_reported(
    sso_login: Any,
    idp_a: IdentityProvider,
    mappings: Tenant,
    client: Client,
    accept: bool,
    values: list[str],
    methods: tuple[str, ...],
    expected: bool,
) -> None:
    idp_a.accept_idp_mfa, idp_a.mfa_values = accept, values
    idp_a.save()
    result = sso_login(idp_a, with_groups(ANN, "acme-admins", auth_methods=methods), client=client)
    assert result.idp_mfa is expected
    assert client.session[SSO_SESSION_KEY]["mfa"] is expected
    assert audit(mappings, "security.sso_login")[-1].changes["idp_mfa"] is expected


def test_saml_authn_context_counts_as_mfa(sso_login: Any, tenant_a: Tenant, mappings: Tenant) -> None:
    saml = IdentityProvider.objects.create(
        tenant=tenant_a, name="SAML", protocol="saml", accept_idp_mfa=True, saml_metadata_xml="<x/>"
    )
    saml.domains.create(tenant=tenant_a, domain="acme.example", verification_token="t")  # unverified
    ExternalIdentity.objects.create(
        identity_provider=saml, subject="saml-ann", user=User.objects.create_user("ann", email="a@x.example")
    )
    mfa = "http://schemas.microsoft.com/claims/multipleauthn"
    claims = SsoClaims(subject="saml-ann", email="", groups=("acme-admins",), auth_methods=(mfa,))
    assert sso_login(saml, claims).idp_mfa is True


def test_accepted_idp_mfa_lets_an_admin_in_without_totp(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant, client: Client
) -> None:
    idp_a.accept_idp_mfa = True
    idp_a.save()
    user = sso_login(idp_a, with_groups(ANN, "acme-admins")).user
    enroll(user)
    sso_login(idp_a, with_groups(ANN, "acme-admins", auth_methods=("pwd", "mfa")), client=client)
    assert client.get(tenant_home(mappings)).status_code == 200


def test_without_idp_mfa_an_admin_with_a_device_is_asked_for_totp(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant, client: Client
) -> None:
    idp_a.accept_idp_mfa = True
    idp_a.save()
    user = sso_login(idp_a, with_groups(ANN, "acme-admins")).user
    enroll(user)
    sso_login(idp_a, with_groups(ANN, "acme-admins", auth_methods=("pwd",)), client=client)
    response = client.get(tenant_home(mappings))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:otp-verify"))


def test_without_idp_mfa_an_admin_without_a_device_must_enrol(
    sso_login: Any, idp_a: IdentityProvider, mappings: Tenant, client: Client
) -> None:
    sso_login(idp_a, with_groups(ANN, "acme-admins", auth_methods=("mfa",)), client=client)  # not accepted
    response = client.get(tenant_home(mappings))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:twofactor-enroll"))


# --- enforcement -------------------------------------------------------------------------------------------
MEMBERS_API = "/api/v1/tenants/tenant-a/members/"


@pytest.fixture
def enforced(mappings: Tenant, idp_a: IdentityProvider) -> Tenant:
    Tenant.objects.filter(pk=mappings.pk).update(sso_enforced=True)
    mappings.refresh_from_db()
    return mappings


def test_a_password_session_of_an_enforcing_tenants_member_is_sent_to_its_idp(
    client: Client, alice: Any, enforced: Tenant
) -> None:
    login_verified(client, alice)
    response = client.get(tenant_home(enforced) + "?x=1")
    assert response.status_code == 302
    assert response["Location"] == (
        reverse("accounts:sso-tenant", kwargs={"organisation": "tenant-a"})
        + "?next=%2Ft%2Ftenant-a%2F%3Fx%3D1"
    )
    api = client.get(MEMBERS_API)
    assert api.status_code == 403 and "single sign-on" in api.json()["detail"]


def test_enforcement_does_not_leak_the_tenant_to_non_members(
    client: Client, charlie: Any, enforced: Tenant
) -> None:
    login_verified(client, charlie)
    assert client.get(tenant_home(enforced)).status_code == 404
    assert client.get(MEMBERS_API).status_code == 404


def test_a_session_from_the_tenants_idp_passes(
    sso_login: Any, idp_a: IdentityProvider, enforced: Tenant, client: Client
) -> None:
    idp_a.accept_idp_mfa = True
    idp_a.save()
    sso_login(idp_a, with_groups(ANN, "acme-admins", auth_methods=("mfa",)), client=client)
    assert client.get(tenant_home(enforced)).status_code == 200
    assert client.get(MEMBERS_API).status_code == 200


def test_a_session_from_another_tenants_idp_does_not_count(
    sso_login: Any, idp_b: IdentityProvider, enforced: Tenant, tenant_b: Tenant, client: Client
) -> None:
    result = sso_login(idp_b, SsoClaims(subject="g-1", email="gus@globex.example"), client=client)
    Membership.objects.create(tenant=enforced, user=result.user, role=Role.VIEWER)
    assert client.get(tenant_home(tenant_b)).status_code == 200
    assert client.get(tenant_home(enforced)).status_code == 302
    assert client.get(MEMBERS_API).status_code == 403


def test_operators_and_the_break_glass_admin_pass(
    client: Client, alice: Any, operator: Any, enforced: Tenant
) -> None:
    Membership.objects.filter(user=alice, tenant=enforced).update(is_break_glass=True)
    for user in (alice, operator):
        login_verified(client, user)
        assert client.get(tenant_home(enforced)).status_code == 200, user
        assert client.get(MEMBERS_API).status_code == 200, user
        client.logout()


def test_the_tenant_sign_in_page_does_not_loop_for_a_blocked_member(
    client: Client, bob: Any, enforced: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page enforcement sends people to must itself be reachable (it names the tenant in its URL)."""
    from apps.accounts import sso_views

    monkeypatch.setattr(
        sso_views, "start", lambda request, provider, next_url: sso_views.sso_error(request, "x")
    )
    client.force_login(bob)
    response = client.get(reverse("accounts:sso-tenant", kwargs={"organisation": "tenant-a"}))
    assert response.status_code == 403 and b'data-testid="sso-error"' in response.content


# --- sessions_end ------------------------------------------------------------------------------------------
def test_sessions_end_signs_the_user_out_everywhere_and_no_one_else(
    client: Client, bob: Any, alice: Any
) -> None:
    other, second = Client(), Client()
    client.force_login(bob)
    second.force_login(bob)
    login_verified(other, alice)
    profile = reverse("accounts:profile")
    assert client.get(profile).status_code == 200
    sessions_end(user=bob)
    for bobs in (client, second):
        response = bobs.get(profile)
        assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
        assert "_auth_user_id" not in bobs.session
    assert other.get(profile).status_code == 200
    bob.refresh_from_db()
    assert bob.session_epoch == 1
    client.force_login(bob)  # a new sign-in after it works
    assert client.get(profile).status_code == 200


def test_epoch_zero_keeps_djangos_own_session_hash(bob: Any) -> None:
    """Sessions made before the epoch existed stay valid: epoch 0 is Django's hash unchanged."""
    assert bob.session_epoch == 0
    assert bob.get_session_auth_hash() == AbstractBaseUser.get_session_auth_hash(bob)
    sessions_end(user=bob)
    bob.refresh_from_db()
    assert bob.get_session_auth_hash() != AbstractBaseUser.get_session_auth_hash(bob)


# --- membership_sync ---------------------------------------------------------------------------------------
def test_membership_sync_audits_each_change_once(tenant_a: Tenant, bob: Any, alice: Any) -> None:
    def sync(grant: Any) -> Any:
        return membership_sync(tenant=tenant_a, user=bob, grant=grant, source="scim", reason="scim_group")

    sync(("localization_editor", ["de"], []))
    sync(("localization_editor", ["de"], []))  # no change, no row
    [changed] = audit(tenant_a, "member.role_changed")
    assert changed.changes == {
        "role": ["viewer", "localization_editor"],
        "locales": [[], ["de"]],
        "source": ["local", "scim"],
        "reason": "scim_group",
    }
    assert changed.target_id == str(bob.pk) and changed.target_label == "bob"
    assert sync(None) is None
    [removed] = audit(tenant_a, "member.removed")
    assert removed.changes == {"role": "localization_editor", "source": "scim", "reason": "scim_group"}
    assert sync(None) is None and len(audit(tenant_a, "member.removed")) == 1
    assert Membership.objects.filter(user=alice, tenant=tenant_a).exists()  # others untouched
