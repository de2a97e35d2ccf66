"""Reads for accounts: lockout state, two-factor requirements and devices, users by e-mail."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import idna
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Q
from django_otp import user_has_device

from apps.accounts.models import (
    BackupCode,
    BackupCodeDevice,
    IdentityProvider,
    RoleMapping,
    SsoDomain,
    TOTPDevice,
)
from apps.tenants.models import Membership, Tenant
from apps.tenants.roles import ROLES_REQUIRING_2FA
from apps.tenants.sso import SSO_SESSION_KEY

LOCKOUT_KEY_PREFIX = "accounts:login-fail"


def lockout_account_key(username: str) -> str:
    """Name the failure counter of an account; hashed so Redis holds no usernames, case-folded."""
    digest = hashlib.sha256(username.strip().casefold().encode()).hexdigest()
    return f"{LOCKOUT_KEY_PREFIX}:account:{digest}"


def lockout_ip_key(ip: str) -> str:
    digest = hashlib.sha256(ip.encode()).hexdigest()
    return f"{LOCKOUT_KEY_PREFIX}:ip:{digest}"


def login_failures(*, username: str | None = None, ip: str | None = None) -> dict[str, int]:
    """Return the failure counts of the account and the client address in the current window."""
    keys = {}
    if username is not None:
        keys["account"] = lockout_account_key(username)
    if ip is not None:
        keys["ip"] = lockout_ip_key(ip)
    values = cache.get_many(list(keys.values()))
    return {name: int(values.get(key, 0)) for name, key in keys.items()}


def login_is_locked(*, username: str | None = None, ip: str | None = None) -> bool:
    """Tell whether sign-in is refused for this account name or this client address."""
    counts = login_failures(username=username, ip=ip)
    return (
        counts.get("account", 0) >= settings.LOGIN_LOCKOUT_ACCOUNT_LIMIT
        or counts.get("ip", 0) >= settings.LOGIN_LOCKOUT_IP_LIMIT
    )


def user_is_locked(*, user: Any) -> bool:
    return login_is_locked(username=user.get_username())


def user_requires_2fa(*, user: Any) -> bool:
    """Tell whether the user must have a confirmed second factor.

    Operators always; members holding a role in ROLES_REQUIRING_2FA in any tenant; every member of a tenant
    that requires it for everyone; break-glass admins.
    """
    if not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return (
        Membership.objects.filter(user=user)
        .filter(
            Q(role__in=ROLES_REQUIRING_2FA)
            | Q(tenant__require_2fa=True, tenant__is_active=True)
            | Q(is_break_glass=True)
        )
        .exists()
    )


def second_factor_done(*, request: Any) -> bool:
    """Tell whether this session passed a second factor: our TOTP/backup code, or the IdP's accepted MFA."""
    user = request.user
    if user.is_verified():
        return True
    sso = request.session.get(SSO_SESSION_KEY)
    return isinstance(sso, dict) and bool(sso.get("mfa"))


def sso_required_tenant(*, user: Any) -> Tenant | None:
    """The tenant whose IdP a user must use instead of a password, when every membership enforces SSO.

    None for operators, for users with any membership that allows passwords, and for break-glass admins.
    """
    if user.is_staff:
        return None
    memberships = list(Membership.objects.filter(user=user).select_related("tenant"))
    if not memberships:
        return None
    if any(not m.tenant.sso_enforced or m.is_break_glass for m in memberships):
        return None
    return memberships[0].tenant


def user_has_confirmed_device(*, user: Any) -> bool:
    return bool(user.is_authenticated and user_has_device(user, confirmed=True))


def totp_device_confirmed(*, user: Any) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def totp_device_pending(*, user: Any) -> TOTPDevice | None:
    """Return the unconfirmed TOTP device an enrollment in progress uses, if any."""
    return TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()


def backup_codes_remaining(*, user: Any) -> int:
    return BackupCode.objects.filter(device__user=user, device__confirmed=True).count()


def backup_device(*, user: Any) -> BackupCodeDevice | None:
    return BackupCodeDevice.objects.filter(user=user, confirmed=True).first()


def user_by_email(*, email: str) -> Any | None:
    return get_user_model().objects.filter(email__iexact=email).first()


def login_name(*, name: str) -> str:
    """The username to check a password against: `name` itself, or the username of the one account with
    that e-mail address (the sign-in page asks for "e-mail or username"; an address several accounts share
    stays as typed, so it matches nothing)."""
    user_model = get_user_model()
    if "@" not in name or user_model.objects.filter(username=name).exists():
        return name
    usernames = list(
        user_model.objects.filter(email__iexact=name.strip()).values_list("username", flat=True)[:2]
    )
    return usernames[0] if len(usernames) == 1 else name


def user_by_username(*, username: str) -> Any | None:
    return get_user_model().objects.filter(username=username).only("pk").first()


# --- single sign-on ----------------------------------------------------------------------------------------
def identity_provider_get(*, pk: int) -> IdentityProvider | None:
    return IdentityProvider.objects.select_related("tenant").filter(pk=pk).first()


def identity_provider_for_tenant(*, tenant_slug: str) -> IdentityProvider | None:
    """The tenant's active identity provider (the first by name when there are several)."""
    return (
        IdentityProvider.objects.select_related("tenant")
        .filter(tenant__slug=tenant_slug, tenant__is_active=True, is_active=True)
        .order_by("name", "pk")
        .first()
    )


def email_domain(email: str) -> str:
    """The address's domain as verified domains are stored: lower case, ASCII (IDNA), no trailing dot."""
    domain = email.rpartition("@")[2].strip().lower().rstrip(".")
    try:
        return idna.encode(domain, uts46=True).decode("ascii") if domain else ""
    except (idna.IDNAError, UnicodeError, ValueError):
        return domain


def identity_provider_for_email(*, email: str) -> IdentityProvider | None:
    """Home-realm discovery: the active IdP of the tenant that verified the address's domain, if any."""
    domain = email_domain(email)
    if not domain:
        return None
    found = (
        SsoDomain.objects.select_related("identity_provider__tenant")
        .filter(
            domain=domain,
            verified_at__isnull=False,
            identity_provider__is_active=True,
            tenant__is_active=True,
        )
        .first()
    )
    return found.identity_provider if found is not None else None


# --- single sign-on configuration (console and management API) ---------------------------------------------
def _tenant_row(queryset: Any, pk: Any) -> Any:
    """The row `pk` of the (tenant-filtered) queryset, or None for a malformed, missing or foreign id."""
    try:
        return queryset.filter(pk=int(pk)).first()
    except (TypeError, ValueError):
        return None


def provider_list(*, tenant: Tenant) -> Any:
    return IdentityProvider.objects.filter(tenant=tenant).select_related("tenant").order_by("name", "pk")


def provider_get(*, tenant: Tenant, pk: Any) -> IdentityProvider | None:
    return _tenant_row(provider_list(tenant=tenant), pk)


def domain_list(*, tenant: Tenant) -> Any:
    return (
        SsoDomain.objects.filter(tenant=tenant)
        .select_related("tenant", "identity_provider")
        .order_by("domain", "pk")
    )


def domain_get(*, tenant: Tenant, pk: Any) -> SsoDomain | None:
    return _tenant_row(domain_list(tenant=tenant), pk)


def mapping_list(*, tenant: Tenant) -> Any:
    return RoleMapping.objects.filter(tenant=tenant).select_related("tenant").order_by("position", "id")


def mapping_get(*, tenant: Tenant, pk: Any) -> RoleMapping | None:
    return _tenant_row(mapping_list(tenant=tenant), pk)


def break_glass_membership(*, tenant: Tenant) -> Membership | None:
    return Membership.objects.filter(tenant=tenant, is_break_glass=True).select_related("user").first()


def admin_memberships(*, tenant: Tenant) -> list[Membership]:
    """The tenant's admins: who may be designated break-glass."""
    return list(
        Membership.objects.filter(tenant=tenant, role="admin")
        .select_related("user")
        .order_by("user__username")
    )


@dataclass(frozen=True)
class SsoReadiness:
    """What the tenant's SSO setup lacks before enforcement can be switched on."""

    has_active_provider: bool
    has_verified_domain: bool  # of an active provider
    has_mapping: bool  # a role mapping or a provider's default role
    break_glass: Membership | None

    @property
    def can_enforce(self) -> bool:
        return self.has_active_provider and self.has_verified_domain


def sso_readiness(*, tenant: Tenant) -> SsoReadiness:
    providers = IdentityProvider.objects.filter(tenant=tenant, is_active=True)
    return SsoReadiness(
        has_active_provider=providers.exists(),
        has_verified_domain=SsoDomain.objects.filter(
            tenant=tenant, verified_at__isnull=False, identity_provider__is_active=True
        ).exists(),
        has_mapping=RoleMapping.objects.filter(tenant=tenant).exists()
        or providers.exclude(default_role="").exists(),
        break_glass=break_glass_membership(tenant=tenant),
    )
