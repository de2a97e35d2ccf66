"""Reads for accounts: lockout state, two-factor requirements and devices, users by e-mail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import idna
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone
from django_otp import user_has_device

from apps.accounts.models import (
    AccessReview,
    BackupCode,
    BackupCodeDevice,
    ExternalIdentity,
    IdentityProvider,
    RoleMapping,
    ScimToken,
    ScimUser,
    SsoDomain,
    TOTPDevice,
)
from apps.core.context import tenant_context
from apps.core.models import REGION, silo_of
from apps.tenants import roles
from apps.tenants.models import ManagementToken, Membership, Tenant
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


# --- access review (issue 22): who could do what, per tenant ------------------------------------------------
STALE_DAYS = 90  # SOC 2 auditors' usual window for dormant accounts and unused credentials

# Flags an auditor acts on. Member flags: a role that needs a second factor without one; no sign-in for
# STALE_DAYS. Token flags: active but unused for STALE_DAYS; active without an expiry date.
FLAG_MISSING_2FA = "missing_2fa"
FLAG_DORMANT = "dormant"
FLAG_TOKEN_UNUSED = "token_unused"  # noqa: S105 - a flag name, not a secret
FLAG_TOKEN_NO_EXPIRY = "token_no_expiry"  # noqa: S105 - a flag name, not a secret
MEMBER_FLAGS = (FLAG_MISSING_2FA, FLAG_DORMANT)
TOKEN_FLAGS = (FLAG_TOKEN_UNUSED, FLAG_TOKEN_NO_EXPIRY)

TokenRow = dict[str, Any]
TokenSource = Callable[..., list[TokenRow]]
_token_sources: list[TokenSource] = []


def register_token_source(source: TokenSource) -> None:
    """Let a higher app list its credentials in the report (chat's channel API keys).

    `source(tenant=, now=)` returns rows built with `access_token_row`; apps register in AppConfig.ready(), so
    every process lists the same."""
    if source not in _token_sources:
        _token_sources.append(source)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None


def access_token_row(
    *,
    kind: str,
    token: Any,
    owner: str,
    scope: str = "",
    now: datetime | None = None,
) -> TokenRow:
    """One row of the tokens table (any credential with name, prefix, created/expires/last used/revoked)."""
    now = now or timezone.now()
    revoked = token.revoked_at is not None
    expired = token.expires_at is not None and token.expires_at <= now
    active = not (revoked or expired)
    flags = []
    if active and (token.last_used_at or token.created_at) < now - timedelta(days=STALE_DAYS):
        flags.append(FLAG_TOKEN_UNUSED)
    if active and token.expires_at is None:
        flags.append(FLAG_TOKEN_NO_EXPIRY)
    return {
        "kind": kind,
        "id": str(token.pk),
        "name": token.name,
        "prefix": token.prefix,
        "owner": owner,
        "scope": scope,
        "created": _iso(token.created_at),
        "expires": _iso(token.expires_at),
        "last_used": _iso(token.last_used_at),
        "revoked": _iso(token.revoked_at),
        "active": active,
        "flags": flags,
    }


def _device_kinds(user_ids: list[int]) -> dict[int, list[str]]:
    """Confirmed second factors per user (two queries, whatever the number of users)."""
    kinds: dict[int, list[str]] = {}
    for model, kind in ((TOTPDevice, "totp"), (BackupCodeDevice, "backup_codes")):
        for user_id in model.objects.filter(user_id__in=user_ids, confirmed=True).values_list(
            "user_id", flat=True
        ):
            if kind not in kinds.setdefault(user_id, []):
                kinds[user_id].append(kind)
    return kinds


def _object_grants(tenant: Tenant, user_ids: list[int]) -> dict[int, list[dict[str, str]]]:
    """Guardian rows of these users on this tenant's region objects, with each object's label.

    The rows sit in the control database and name no tenant: the objects are looked up in the tenant's region
    (one query per kind of object), and a row whose object is not this tenant's is left out.
    """
    from guardian.models import UserObjectPermission

    rows = list(
        UserObjectPermission.objects.filter(user_id__in=user_ids)
        .select_related("permission", "content_type")
        .order_by("content_type_id", "object_pk", "permission__codename")
    )
    by_type: dict[Any, list[Any]] = {}
    for row in rows:
        by_type.setdefault(row.content_type, []).append(row)
    grants: dict[int, list[dict[str, str]]] = {}
    with tenant_context(tenant):
        for content_type, type_rows in by_type.items():
            model = content_type.model_class()
            if model is None or silo_of(model) != REGION:
                continue
            pks = {row.object_pk for row in type_rows}
            labels = {str(obj.pk): str(obj) for obj in model._default_manager.filter(pk__in=pks)}
            for row in type_rows:
                if row.object_pk in labels:
                    grants.setdefault(row.user_id, []).append(
                        {
                            "type": content_type.model,
                            "id": row.object_pk,
                            "label": labels[row.object_pk],
                            "permission": row.permission.codename,
                        }
                    )
    return grants


def _person(user: Any, *, devices: dict[int, list[str]], sso: dict[int, datetime]) -> dict[str, Any]:
    signed_in = max((t for t in (user.last_login, sso.get(user.pk)) if t is not None), default=None)
    return {
        "user_id": user.pk,
        "username": user.get_username(),
        "email": user.email,
        "last_sign_in": _iso(signed_in),
        "two_factor": devices.get(user.pk, []),
        "active": user.is_active,
    }


def access_review_report(*, tenant: Tenant, now: datetime | None = None) -> dict[str, Any]:
    """Who could do what in `tenant`: members (role, permissions, object grants, sign-in, second factor),
    platform operators, every token. Codes, not labels: the digest must not depend on the reader's language.

    A constant number of queries, whatever the number of members, tokens and grants (tests assert it).
    """
    now = now or timezone.now()
    stale = now - timedelta(days=STALE_DAYS)
    memberships = list(
        Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username", "pk")
    )
    operators = list(get_user_model().objects.filter(is_staff=True).order_by("username", "pk"))
    user_ids = [m.user_id for m in memberships] + [u.pk for u in operators]
    devices = _device_kinds(user_ids)
    sso: dict[int, datetime] = {}
    for user_id, signed_in in ExternalIdentity.objects.filter(
        identity_provider__tenant=tenant, user_id__in=user_ids, last_sign_in_at__isnull=False
    ).values_list("user_id", "last_sign_in_at"):
        if signed_in is not None:
            sso[user_id] = max(signed_in, sso.get(user_id, signed_in))
    scim_active = dict(ScimUser.objects.filter(tenant=tenant).values_list("user_id", "active"))
    idp_mfa = IdentityProvider.objects.filter(tenant=tenant, is_active=True, accept_idp_mfa=True).exists()
    grants = _object_grants(tenant, [m.user_id for m in memberships])

    members = []
    for membership in memberships:
        row = _person(membership.user, devices=devices, sso=sso)
        row["active"] = row["active"] and scim_active.get(membership.user_id, True)
        needs_2fa = (
            membership.role in roles.ROLES_REQUIRING_2FA or tenant.require_2fa or membership.is_break_glass
        )
        # A member the IdP signs in may bring the IdP's MFA instead of ours, when the tenant accepts that.
        idp_covers = idp_mfa and membership.source != "local"
        flags = []
        if needs_2fa and not row["two_factor"] and not idp_covers:
            flags.append(FLAG_MISSING_2FA)
        last = max((t for t in (membership.user.last_login, sso.get(membership.user_id)) if t), default=None)
        if row["active"] and (last or membership.created_at) < stale:
            flags.append(FLAG_DORMANT)
        row.update(
            role=membership.role,
            permissions=sorted(roles.permissions_for(membership.role)),
            member_since=_iso(membership.created_at),
            object_grants=grants.get(membership.user_id, []),
            managed_by=membership.source,
            break_glass=membership.is_break_glass,
            flags=flags,
        )
        members.append(row)

    tokens = [
        access_token_row(kind="management", token=t, owner=t.user.get_username(), now=now)
        for t in ManagementToken.objects.filter(tenant=tenant).select_related("user").order_by("created_at")
    ]
    tokens += [
        access_token_row(
            kind="scim", token=t, owner=t.created_by.get_username() if t.created_by else "", now=now
        )
        for t in ScimToken.objects.filter(tenant=tenant).select_related("created_by").order_by("created_at")
    ]
    for source in _token_sources:
        tokens += source(tenant=tenant, now=now)

    people = [_person(u, devices=devices, sso={}) for u in operators]
    flag_count = sum(len(r["flags"]) for r in members) + sum(len(r["flags"]) for r in tokens)
    return {
        "tenant": tenant.slug,
        "as_of": now.date().isoformat(),
        "stale_days": STALE_DAYS,
        "members": members,
        "operators": people,
        "tokens": tokens,
        "counts": {
            "members": len(members),
            "operators": len(people),
            "api_access": len(tokens),  # audit_record censors keys that say "token" or "credential"
            "flags": flag_count,
        },
    }


def access_review_digest(report: dict[str, Any]) -> str:
    """SHA-256 of the report's canonical JSON (sorted keys, no spaces): what a sign-off and an export name."""
    body = json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


def access_review_list(*, limit: int = 20) -> list[AccessReview]:
    """The current tenant's past sign-offs, newest first (call inside the tenant context)."""
    return list(AccessReview.objects.order_by("-created_at", "-id")[:limit])
