"""Writes of regions and tenants."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models.base import ModelState
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.core.context import tenant_context
from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.core.tokens import token_hash, token_issue, token_revoke, token_touch
from apps.tenants.models import (
    Invitation,
    ManagementToken,
    Membership,
    Region,
    RegionTenant,
    Role,
    Tenant,
)
from apps.tenants.selectors import tenant_has_region_data

logger = logging.getLogger(__name__)
INVITATION_SALT = "hub.invitation"
INVITATION_TTL = timedelta(days=7)

REGION_NAMES = {"eu": "European Union", "us": "United States", "apac": "Asia-Pacific", "uk": "United Kingdom"}


def region_sync() -> list[Region]:
    """Make the Region rows match settings.HUB_REGIONS (the database aliases are fixed at start-up)."""
    regions = []
    for code in settings.HUB_REGIONS:
        region, _ = Region.objects.get_or_create(
            code=code, defaults={"name": REGION_NAMES.get(code, code.upper())}
        )
        regions.append(region)
    Region.objects.exclude(code__in=settings.HUB_REGIONS).update(is_active=False)
    return regions


def _clean_locales(default_locale: str, enabled_locales: Iterable[str]) -> list[str]:
    """Put the default locale first and drop repeats."""
    return list(dict.fromkeys([default_locale, *enabled_locales]))


def tenant_create(
    *,
    slug: str,
    name: str,
    home_region: Region,
    default_locale: str = "en",
    enabled_locales: Iterable[str] = (),
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Tenant:
    """Create a tenant in the control silo and its anchor row in its home region.

    The two databases cannot share a transaction; if the region write fails the control row is removed,
    so no tenant exists without its region anchor.
    """
    if not home_region.is_active:
        raise ValidationFailed("Region is not active.", {"home_region": ["This region is not active."]})
    tenant = Tenant(
        slug=slug,
        name=name,
        home_region=home_region,
        default_locale=default_locale,
        enabled_locales=_clean_locales(default_locale, enabled_locales),
    )
    tenant.full_clean()
    try:
        with transaction.atomic():
            tenant.save()
    except IntegrityError:
        raise ValidationFailed("Slug taken.", {"slug": ["A tenant with this slug already exists."]}) from None
    try:
        with tenant_context(tenant), transaction.atomic(using=home_region.db_alias):
            RegionTenant.objects.create(slug=tenant.slug)
    except Exception:
        tenant.delete()
        raise
    audit_record(
        "tenant.created",
        tenant=tenant,
        actor=actor,
        request=request,
        target=tenant,
        changes={
            "name": name,
            "home_region": home_region.code,
            "default_locale": default_locale,
            "enabled_locales": tenant.enabled_locales,
        },
    )
    return tenant


def tenant_update(
    *,
    tenant: Tenant,
    name: str | None = None,
    default_locale: str | None = None,
    enabled_locales: Iterable[str] | None = None,
    home_region: Region | None = None,
    is_active: bool | None = None,
    require_2fa: bool | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Tenant:
    """Change tenant settings; the home region only while its region holds no data (else: a migration)."""
    before = {field: getattr(tenant, field) for field in TENANT_AUDITED_FIELDS}
    before["home_region"] = tenant.region_code
    if (
        home_region is not None
        and home_region.pk != tenant.home_region_id
        and tenant_has_region_data(tenant=tenant)
    ):
        # Creation already writes the tenant's audit chain there, so in practice the region is fixed.
        raise Conflict(
            _("The home region cannot be changed once the tenant has data; that is a data migration.")
        )
    if home_region is not None and home_region.pk != tenant.home_region_id:
        with tenant_context(tenant):
            RegionTenant.objects.all().delete()
        tenant.home_region = home_region
        with tenant_context(tenant):
            RegionTenant.objects.create(slug=tenant.slug)
    if name is not None:
        tenant.name = name
    if default_locale is not None:
        tenant.default_locale = default_locale
    if enabled_locales is not None or default_locale is not None:
        tenant.enabled_locales = _clean_locales(
            tenant.default_locale, enabled_locales if enabled_locales is not None else tenant.enabled_locales
        )
    if is_active is not None:
        tenant.is_active = is_active
    if require_2fa is not None:
        tenant.require_2fa = require_2fa
    tenant.full_clean()
    tenant.save()
    after = {field: getattr(tenant, field) for field in TENANT_AUDITED_FIELDS}
    after["home_region"] = tenant.region_code
    changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if changes:
        audit_record(
            "tenant.updated", tenant=tenant, actor=actor, request=request, target=tenant, changes=changes
        )
    return tenant


TENANT_AUDITED_FIELDS = ("name", "default_locale", "enabled_locales", "is_active", "require_2fa")


# --- memberships -----------------------------------------------------------------------------------------
def _admin_count(tenant: Tenant) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.ADMIN).count()


def membership_add(
    *,
    tenant: Tenant,
    user: Any,
    role: str,
    locales: Iterable[str] = (),
    regions: Iterable[str] = (),
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Membership:
    """Add `user` to `tenant` with `role` (or change the role of an existing membership)."""
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            tenant=tenant,
            user=user,
            defaults={"role": role, "locales": list(locales), "regions": list(regions)},
        )
        if not created:
            return membership_change_role(membership=membership, role=role, actor=actor, request=request)
        membership.full_clean()
    audit_record(
        "member.added",
        tenant=tenant,
        actor=actor,
        request=request,
        target_type="user",
        target_id=user.pk,
        target_label=user.get_username(),
        changes={"role": role},
    )
    return membership


def membership_change_role(
    *,
    membership: Membership,
    role: str,
    locales: Iterable[str] | None = None,
    regions: Iterable[str] | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Membership:
    """Change a member's role; refuses to demote the tenant's last admin."""
    if role not in Role.values:
        raise ValidationFailed(_("Unknown role."), {"role": [_("Choose a valid role.")]})
    with transaction.atomic():
        Tenant.objects.select_for_update().get(pk=membership.tenant_id)  # serialize last-admin checks
        membership.refresh_from_db()
        if membership.role == Role.ADMIN and role != Role.ADMIN and _admin_count(membership.tenant) <= 1:
            raise Conflict(_("A tenant needs at least one admin; promote someone else first."))
        before = (membership.role, list(membership.locales), list(membership.regions))
        membership.role = role
        if locales is not None:
            membership.locales = list(locales)
        if regions is not None:
            membership.regions = list(regions)
        membership.full_clean()
        membership.save()
    after = (membership.role, membership.locales, membership.regions)
    changes = {
        k: [b, a] for k, b, a in zip(("role", "locales", "regions"), before, after, strict=True) if b != a
    }
    if changes:
        audit_record(
            "member.role_changed",
            tenant=membership.tenant,
            actor=actor,
            request=request,
            target_type="user",
            target_id=membership.user_id,
            target_label=membership.user.get_username(),
            changes=changes,
        )
    return membership


def membership_remove(
    *, membership: Membership, actor: Any = None, request: HttpRequest | None = None
) -> None:
    """Remove a member and their tenant permissions; refuses to remove the last admin."""
    with transaction.atomic():
        Tenant.objects.select_for_update().get(pk=membership.tenant_id)
        if membership.role == Role.ADMIN and _admin_count(membership.tenant) <= 1:
            raise Conflict(_("The last admin of a tenant cannot be removed."))
        membership.delete()
    audit_record(
        "member.removed",
        tenant=membership.tenant,
        actor=actor,
        request=request,
        target_type="user",
        target_id=membership.user_id,
        target_label=membership.user.get_username(),
        changes={"role": membership.role},
    )


# --- invitations -----------------------------------------------------------------------------------------
def invitation_token(invitation: Invitation) -> str:
    return signing.dumps({"i": invitation.pk, "e": invitation.email}, salt=INVITATION_SALT)


def invitation_create(
    *,
    tenant: Tenant,
    email: str,
    role: str,
    invited_by: Any,
    base_url: str,
    request: HttpRequest | None = None,
) -> Invitation:
    """Record an invitation and e-mail its signed link (the console backend logs it in development)."""
    email = get_user_model().objects.normalize_email(email).lower()
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise ValidationFailed(_("Already a member."), {"email": [_("This person is already a member.")]})
    invitation = Invitation(
        tenant=tenant,
        email=email,
        role=role,
        invited_by=invited_by,
        expires_at=timezone.now() + INVITATION_TTL,
    )
    invitation.full_clean()
    invitation.save()
    link = base_url.rstrip("/") + reverse("accounts:invitation-accept", args=[invitation_token(invitation)])
    send_mail(
        subject=_("You are invited to %(tenant)s") % {"tenant": tenant.name},
        message=_(
            "%(inviter)s invited you to join %(tenant)s as %(role)s.\n\nAccept: %(link)s\n\n"
            "The link expires in 7 days."
        )
        % {
            "inviter": invited_by.get_username() if invited_by else "",
            "tenant": tenant.name,
            "role": Role(role).label,
            "link": link,
        },
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[email],
    )
    audit_record(
        "member.invited",
        tenant=tenant,
        actor=invited_by,
        request=request,
        target=invitation,
        changes={"role": role},
    )
    return invitation


def invitation_resolve(*, token: str) -> Invitation:
    """Return the open invitation a link points to, or raise NotFound (bad, expired, used or revoked)."""
    try:
        data = signing.loads(token, salt=INVITATION_SALT, max_age=INVITATION_TTL)
        invitation = Invitation.objects.select_related("tenant").get(pk=data["i"], email=data["e"])
    except (signing.BadSignature, Invitation.DoesNotExist, KeyError, TypeError):
        raise NotFound(_("This invitation link is invalid or has expired.")) from None
    if invitation.accepted_at or invitation.revoked_at or invitation.expires_at < timezone.now():
        raise NotFound(_("This invitation link is invalid or has expired."))
    return invitation


def invitation_accept(*, token: str, user: Any, request: HttpRequest | None = None) -> Membership:
    """Turn an invitation into a membership for the signed-in user, once."""
    with transaction.atomic():
        invitation = invitation_resolve(token=token)
        Invitation.objects.select_for_update().get(pk=invitation.pk)
        membership = membership_add(
            tenant=invitation.tenant, user=user, role=invitation.role, actor=user, request=request
        )
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_at", "updated_at"])
    return membership


def invitation_revoke(
    *, invitation: Invitation, actor: Any = None, request: HttpRequest | None = None
) -> None:
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at", "updated_at"])
        audit_record(
            "member.invitation_revoked",
            tenant=invitation.tenant,
            actor=actor,
            request=request,
            target=invitation,
        )


# --- management tokens -----------------------------------------------------------------------------------
MANAGEMENT_TOKEN_SCHEME = "hubm"  # noqa: S105 - the public marker that starts every token
management_token_hash = token_hash  # the digest a token is stored under (apps.core.tokens)


def management_token_create(
    *, tenant: Tenant, user: Any, name: str, expires_at: datetime | None, request: HttpRequest | None = None
) -> tuple[ManagementToken, str]:
    """Issue a token acting as `user` in `tenant`; return it with its plaintext `hubm_<prefix>_<secret>`,
    which is shown once (apps.core.tokens)."""
    errors: dict[str, list[str]] = {}
    if not name.strip():
        errors["name"] = [_("Give the token a name.")]
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = [_("The expiry must be in the future.")]
    is_member = Membership.objects.filter(tenant=tenant, user=user).exists()
    if not (user.is_active and (user.is_staff or is_member)):
        errors["user"] = [_("Only active members of the tenant can hold its tokens.")]
    if errors:
        raise ValidationFailed(_("The token could not be created."), errors)
    token, plaintext = token_issue(
        scheme=MANAGEMENT_TOKEN_SCHEME,
        build=lambda prefix, digest: ManagementToken(
            tenant=tenant,
            user=user,
            name=name.strip(),
            prefix=prefix,
            token_hash=digest,
            expires_at=expires_at,
        ),
    )
    audit_record(
        "api_token.created",
        tenant=tenant,
        actor=user,
        request=request,
        target=token,
        changes={"name": token.name, "prefix": token.prefix, "expires_at": expires_at},
    )
    return token, plaintext


def management_token_revoke(
    *, token: ManagementToken, actor: Any = None, request: HttpRequest | None = None
) -> ManagementToken:
    """Revoke a token for good (idempotent: revoking twice keeps the first time)."""
    if token_revoke(token):
        audit_record("api_token.revoked", tenant=token.tenant, actor=actor, request=request, target=token)
    return token


def management_token_touch(*, token: ManagementToken) -> None:
    """Record use, at most once a minute per token (apps.core.tokens.token_touch)."""
    token_touch(token)


# --- object permissions ------------------------------------------------------------------------------------
def _permission_row(*, user: Any, perm: str, obj: Any) -> dict[str, Any]:
    """The guardian row's identity, built by hand: guardian's own helpers look the content type up in the
    object's database, which for a region object has no contenttypes table."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(type(obj))
    permission = Permission.objects.get(content_type=content_type, codename=perm.split(".", 1)[-1])
    return {"user": user, "permission": permission, "content_type": content_type, "object_pk": str(obj.pk)}


def object_permission_grant(*, user: Any, perm: str, obj: Any, tenant: Tenant, actor: Any = None) -> None:
    """Give `user` a guardian permission on one region object (e.g. a connection or knowledge base)."""
    from guardian.models import UserObjectPermission

    if not Membership.objects.filter(tenant=tenant, user=user).exists():
        raise ValidationFailed(
            _("Not a member."), {"user": [_("Only members of the tenant can be granted access.")]}
        )
    fields = _permission_row(user=user, perm=perm, obj=obj)
    if not UserObjectPermission.objects.filter(**fields).exists():
        row = UserObjectPermission(**fields)
        # guardian's save() reads the object through its generic relation, in the control database; hand it
        # a copy of the object marked as control-silo, so it never looks in the region database.
        shadow = copy.copy(obj)
        shadow._state = ModelState()
        shadow._state.db = "default"
        row._state.fields_cache["content_object"] = shadow
        row.save()
    audit_record(
        "member.object_permission_granted",
        tenant=tenant,
        actor=actor,
        target=obj,
        changes={"user": user.get_username(), "permission": perm},
    )


def object_permission_revoke(*, user: Any, perm: str, obj: Any, tenant: Tenant, actor: Any = None) -> None:
    from guardian.models import UserObjectPermission

    UserObjectPermission.objects.filter(**_permission_row(user=user, perm=perm, obj=obj)).delete()
    audit_record(
        "member.object_permission_revoked",
        tenant=tenant,
        actor=actor,
        target=obj,
        changes={"user": user.get_username(), "permission": perm},
    )


# --- access managed by the identity provider (single sign-on, SCIM) ---------------------------------------
def membership_sync(
    *,
    tenant: Tenant,
    user: Any,
    grant: tuple[str, list[str], list[str]] | None,
    source: str,
    reason: str,
    request: HttpRequest | None = None,
) -> Membership | None:
    """Make `user`'s membership in `tenant` what the IdP's groups grant: (role, locales, regions) or nothing.

    The IdP is authoritative for memberships it manages: a change of group changes the role, no matching group
    removes the membership (the last-admin rule does not hold the IdP back; the break-glass admin is never
    touched). Idempotent; audited only when something changed. Returns the membership, or None.
    """
    with transaction.atomic():
        Tenant.objects.select_for_update().get(pk=tenant.pk)
        membership = Membership.objects.filter(tenant=tenant, user=user).first()
        if membership is not None and membership.is_break_glass:
            return membership
        if grant is None:
            if membership is None:
                return None
            membership.delete()
            action = "member.removed"
            changes: dict[str, Any] = {"role": membership.role, "source": source, "reason": reason}
            result = None
        else:
            role, locales, regions = grant
            if membership is None:
                membership = Membership(tenant=tenant, user=user)
                before: dict[str, Any] = {}
                action = "member.added"
            else:
                before = {
                    "role": membership.role,
                    "locales": list(membership.locales),
                    "regions": list(membership.regions),
                    "source": membership.source,
                }
                action = "member.role_changed"
            membership.role, membership.locales, membership.regions = role, list(locales), list(regions)
            membership.source = source
            after: dict[str, Any] = {
                "role": role,
                "locales": list(locales),
                "regions": list(regions),
                "source": source,
            }
            changes = {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}
            if not changes:
                return membership
            membership.full_clean()
            membership.save()
            changes["reason"] = reason
            result = membership
    audit_record(
        action,
        tenant=tenant,
        request=request,
        target_type="user",
        target_id=user.pk,
        target_label=user.get_username(),
        changes=changes,
    )
    return result
