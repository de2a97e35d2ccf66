"""Single sign-on: what happens once an identity provider has vouched for a user.

The protocol adapters (`connectors.oidc`, `connectors.saml`) verify the IdP's answer and hand over
`SsoClaims`; `sso_sign_in` then finds or creates the user (just-in-time), applies the tenant's role mapping
(the IdP's groups are authoritative), decides whether the IdP's MFA stands in for our TOTP, signs the user in
and audits it. Everything here is protocol-neutral, so OIDC and SAML behave the same.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.accounts.models import ExternalIdentity, IdentityProvider, RoleMapping, ScimUser, SsoDomain
from apps.accounts.selectors import email_domain
from apps.accounts.services import MODEL_BACKEND, record_security_event
from apps.core.outbound import guarded_session
from apps.tenants.models import MembershipSource, Tenant
from apps.tenants.services import membership_sync
from apps.tenants.sso import SSO_SESSION_KEY
from connectors.http import HttpSession

# amr values (RFC 8176) and SAML AuthnContextClassRefs that mean more than one factor, when the IdP does not
# configure its own list (`IdentityProvider.mfa_values`).
DEFAULT_MFA_VALUES: dict[str, frozenset[str]] = {
    IdentityProvider.Protocol.OIDC: frozenset({"mfa", "otp", "hwk", "sc", "fido"}),
    IdentityProvider.Protocol.SAML: frozenset(
        {
            "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
            "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorUnregistered",
            "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken",
            "http://schemas.microsoft.com/claims/multipleauthn",  # Entra ID
            "http://schemas.openid.net/pape/policies/2007/06/multi-factor",  # Okta
        }
    ),
}


@dataclass(frozen=True)
class SsoClaims:
    """What a verified answer of an IdP says about the user (the adapters fill it, nothing else does).

    `auth_methods` holds the OIDC `amr` values and `acr`, or the SAML AuthnContextClassRef(s): the evidence
    of how the user authenticated at the IdP.
    """

    subject: str
    email: str
    email_verified: bool = True
    name: str = ""
    given_name: str = ""
    family_name: str = ""
    groups: tuple[str, ...] = ()
    auth_methods: tuple[str, ...] = ()
    session_index: str = ""  # SAML SessionIndex / OIDC sid, kept for the audit trail
    extra: dict[str, Any] = field(default_factory=dict)


class SsoRefusal(enum.Enum):
    """Why a verified IdP answer still does not let the user in (each has a clear page)."""

    PROVIDER_INACTIVE = "provider_inactive"
    TENANT_INACTIVE = "tenant_inactive"
    EMAIL_MISSING = "email_missing"
    DOMAIN_NOT_VERIFIED = "domain_not_verified"
    USER_INACTIVE = "user_inactive"
    NO_ROLE = "no_role"
    ACCOUNT_CONFLICT = "account_conflict"


REFUSAL_MESSAGES = {
    SsoRefusal.PROVIDER_INACTIVE: lambda: _("This sign-in method is switched off. Ask your administrator."),
    SsoRefusal.TENANT_INACTIVE: lambda: _("This organisation is not active."),
    SsoRefusal.EMAIL_MISSING: lambda: _("Your identity provider did not send a verified e-mail address."),
    SsoRefusal.DOMAIN_NOT_VERIFIED: lambda: _(
        "Your e-mail domain is not verified for this organisation, so no account can be created for it."
    ),
    SsoRefusal.USER_INACTIVE: lambda: _("Your account is deactivated. Ask your administrator."),
    SsoRefusal.NO_ROLE: lambda: _(
        "You signed in, but none of your groups gives access to this organisation. Ask your administrator."
    ),
    SsoRefusal.ACCOUNT_CONFLICT: lambda: _(
        "An account with your e-mail address is linked to another identity. Ask your administrator."
    ),
}


class SsoRefused(Exception):
    """The IdP vouched for the user, but our policy refuses them; `str()` is safe to show."""

    def __init__(self, reason: SsoRefusal) -> None:
        self.reason = reason
        super().__init__(REFUSAL_MESSAGES[reason]())


@dataclass(frozen=True)
class SsoResult:
    user: Any
    membership: Any
    idp_mfa: bool  # the IdP's MFA was accepted in place of our TOTP


def mfa_accepted(*, provider: IdentityProvider, claims: SsoClaims) -> bool:
    """Tell whether the IdP's own multi-factor authentication stands in for our TOTP for this sign-in."""
    if not provider.accept_idp_mfa:
        return False
    accepted = set(provider.mfa_values) or DEFAULT_MFA_VALUES.get(provider.protocol, frozenset())
    return any(value in accepted for value in claims.auth_methods)


def role_grant(
    *, tenant: Tenant, groups: set[str], default_role: str = ""
) -> tuple[str, list[str], list[str]] | None:
    """(role, locales, regions) from the first matching role mapping, else the default role, else None."""
    for mapping in RoleMapping.objects.filter(tenant=tenant).order_by("position", "id"):
        if mapping.group in groups:
            return mapping.role, list(mapping.locales), list(mapping.regions)
    if default_role:
        return default_role, [], []
    return None


def user_groups(*, tenant: Tenant, user: Any, claimed: tuple[str, ...] = ()) -> set[str]:
    """The groups that count for `user` in `tenant`: those the IdP just sent plus the SCIM groups."""
    scim = ScimUser.objects.filter(tenant=tenant, user=user, active=True).values_list(
        "groups__display_name", flat=True
    )
    return {*claimed, *(g for g in scim if g)}


def _verified_domain(*, tenant: Tenant, domain: str) -> bool:
    return SsoDomain.objects.filter(tenant=tenant, domain=domain, verified_at__isnull=False).exists()


def _unique_username(email: str) -> str:
    user_model = get_user_model()
    base = email.lower()[:140]
    candidate = base
    while user_model.objects.filter(username=candidate).exists():
        candidate = f"{base}-{secrets.token_hex(3)}"
    return candidate


def _user_for(*, provider: IdentityProvider, claims: SsoClaims) -> tuple[Any, ExternalIdentity]:
    """Find the user the IdP subject is linked to; else link by verified e-mail in a verified domain; else
    create one (just-in-time provisioning).

    Linking and creating need the e-mail's domain verified by this tenant: otherwise one tenant's IdP could
    assert another tenant's admin's address and take over their account.
    """
    identity = (
        ExternalIdentity.objects.select_related("user")
        .filter(identity_provider=provider, subject=claims.subject)
        .first()
    )
    if identity is not None:
        return identity.user, identity
    email = claims.email.strip()
    if not email or "@" not in email or not claims.email_verified:
        raise SsoRefused(SsoRefusal.EMAIL_MISSING)
    if not _verified_domain(tenant=provider.tenant, domain=email_domain(email)):
        raise SsoRefused(SsoRefusal.DOMAIN_NOT_VERIFIED)
    user_model = get_user_model()
    try:
        with transaction.atomic():
            user = user_model.objects.filter(email__iexact=email).first()
            if user is None:
                user = user_model(
                    username=_unique_username(email),
                    email=email.lower(),
                    first_name=claims.given_name[:150],
                    last_name=claims.family_name[:150],
                )
                user.set_unusable_password()
                user.save()
            elif user.is_staff or user.is_superuser:
                raise SsoRefused(SsoRefusal.ACCOUNT_CONFLICT)  # a tenant's IdP never vouches for an operator
            elif ExternalIdentity.objects.filter(identity_provider=provider, user=user).exists():
                raise SsoRefused(SsoRefusal.ACCOUNT_CONFLICT)  # the address is linked to another subject
            identity = ExternalIdentity.objects.create(
                identity_provider=provider, user=user, subject=claims.subject
            )
    except IntegrityError:  # two first sign-ins at once: the other one linked it
        identity = ExternalIdentity.objects.select_related("user").get(
            identity_provider=provider, subject=claims.subject
        )
    return identity.user, identity


def sso_sign_in(*, request: HttpRequest, provider: IdentityProvider, claims: SsoClaims) -> SsoResult:
    """Let the user the IdP vouched for in, with the role their groups map to; raise SsoRefused otherwise.

    The membership is synchronised at every sign-in (role changes take effect now; no matching group removes
    access), the session remembers that it came from this tenant's IdP (SSO enforcement checks it) and
    whether the IdP's MFA was accepted (then TOTP is not asked).
    """
    tenant = provider.tenant
    details = {"tenant_id": tenant.pk, "provider_id": provider.pk, "protocol": provider.protocol}
    try:
        if not provider.is_active:
            raise SsoRefused(SsoRefusal.PROVIDER_INACTIVE)
        if not tenant.is_active:
            raise SsoRefused(SsoRefusal.TENANT_INACTIVE)
        user, identity = _user_for(provider=provider, claims=claims)
        if not user.is_active or ScimUser.objects.filter(tenant=tenant, user=user, active=False).exists():
            raise SsoRefused(SsoRefusal.USER_INACTIVE)
        groups = user_groups(tenant=tenant, user=user, claimed=claims.groups)
        membership = membership_sync(
            tenant=tenant,
            user=user,
            grant=role_grant(tenant=tenant, groups=groups, default_role=provider.default_role),
            source=MembershipSource.SSO,
            reason="sso_sign_in",
            request=request,
        )
        if membership is None:
            raise SsoRefused(SsoRefusal.NO_ROLE)
    except SsoRefused as refused:
        record_security_event(
            "sso_login", user=None, request=request, outcome="denied", reason=refused.reason.value, **details
        )
        raise
    ExternalIdentity.objects.filter(pk=identity.pk).update(
        groups=sorted(claims.groups)[:200], last_sign_in_at=timezone.now()
    )
    idp_mfa = mfa_accepted(provider=provider, claims=claims)
    auth_login(request, user, backend=MODEL_BACKEND)
    request.session[SSO_SESSION_KEY] = {"tenant": tenant.pk, "provider": provider.pk, "mfa": idp_mfa}
    record_security_event(
        "sso_login",
        user=user,
        request=request,
        outcome="success",
        role=membership.role,
        idp_mfa=idp_mfa,
        **details,
    )
    return SsoResult(user=user, membership=membership, idp_mfa=idp_mfa)


def idp_session(*, max_retries: int = 0, timeout: tuple[float, float] = (5.0, 10.0)) -> HttpSession:
    """The guarded session every tenant-set IdP URL (discovery, JWKS, token, metadata) is fetched through."""
    return guarded_session(max_retries=max_retries, timeout=timeout)


def sessions_end(*, user: Any) -> None:
    """End every session of `user` everywhere (their next request finds itself signed out).

    Raises the user's session epoch, which `User.get_session_auth_hash` folds in: Django flushes any session
    whose stored hash no longer matches. No session index needed, and it holds for every web process.
    """
    get_user_model().objects.filter(pk=user.pk).update(session_epoch=F("session_epoch") + 1)
