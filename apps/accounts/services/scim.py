"""SCIM provisioning writes: a tenant's IdP creates, changes and deactivates users and groups.

Three rules hold everything together:
- an account is created or linked only for an address in one of the tenant's *verified* domains, so one
  tenant's SCIM client can never take over another tenant's user (the same rule as JIT sign-in);
- a change of groups recomputes the member's role at once (`role_grant` over the SCIM groups and the groups
  of the user's last sign-in; `membership_sync(source="scim")`): no mapped group, no membership;
- deactivation (active=false or DELETE) removes the membership, ends every session, revokes the user's
  management tokens of the tenant and, when no membership is left anywhere, deactivates the account; the
  break-glass admin is never touched. Reactivation restores the account and the role its groups grant.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.accounts.models import ExternalIdentity, ScimGroup, ScimToken, ScimUser, SsoDomain
from apps.accounts.scim.errors import invalid_value, uniqueness
from apps.accounts.scim.protocol import GroupChange, GroupData, UserData
from apps.accounts.services.sso import email_domain, role_grant, sessions_end, user_groups
from apps.audit.services import audit_record
from apps.core.errors import ValidationFailed
from apps.core.tokens import token_hash, token_issue, token_revoke, token_touch
from apps.tenants.models import ManagementToken, Membership, MembershipSource, Tenant
from apps.tenants.services import management_token_revoke, membership_sync

SCIM_TOKEN_SCHEME = "hubs"  # noqa: S105 - the public marker that starts every SCIM token


class ScimClient:
    """`request.user` of a /scim/v2/ request and the audit actor: the token, not a person (scim:<prefix>)."""

    pk = None
    id = None
    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, token: ScimToken) -> None:
        self.token = token
        self.tenant = token.tenant
        self.username = f"scim:{token.prefix}"

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username


# --- tokens ------------------------------------------------------------------------------------------------
scim_token_hash = token_hash  # the digest a token is stored under (apps.core.tokens)


def scim_token_create(
    *, tenant: Tenant, name: str, expires_at: datetime | None, actor: Any, request: HttpRequest | None = None
) -> tuple[ScimToken, str]:
    """Issue a SCIM token for `tenant`; return it with its plaintext `hubs_<prefix>_<secret>`, shown once."""
    errors: dict[str, list[str]] = {}
    if not name.strip():
        errors["name"] = [_("Give the token a name.")]
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = [_("The expiry must be in the future.")]
    if errors:
        raise ValidationFailed(_("The token could not be created."), errors)
    token, plaintext = token_issue(
        scheme=SCIM_TOKEN_SCHEME,
        build=lambda prefix, digest: ScimToken(
            tenant=tenant,
            name=name.strip()[:100],
            prefix=prefix,
            token_hash=digest,
            created_by=actor if getattr(actor, "pk", None) else None,
            expires_at=expires_at,
        ),
    )
    audit_record(
        "scim.token_created",
        tenant=tenant,
        actor=actor,
        request=request,
        target=token,
        changes={"name": token.name, "prefix": token.prefix, "expires_at": expires_at},
    )
    return token, plaintext


def scim_token_revoke(*, token: ScimToken, actor: Any, request: HttpRequest | None = None) -> ScimToken:
    """Revoke a token for good (idempotent)."""
    if token_revoke(token):
        audit_record("scim.token_revoked", tenant=token.tenant, actor=actor, request=request, target=token)
    return token


def scim_token_touch(*, token: ScimToken) -> None:
    """Record use at most once a minute (apps.core.tokens.token_touch)."""
    token_touch(token)


# --- helpers -----------------------------------------------------------------------------------------------
def _checked_email(tenant: Tenant, email: str) -> str:
    """The address, if it is one and its domain is verified by `tenant`; else 400 invalidValue."""
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise invalid_value("The user needs an e-mail address (emails or an e-mail userName).") from None
    if not SsoDomain.objects.filter(
        tenant=tenant, domain=email_domain(email), verified_at__isnull=False
    ).exists():
        raise invalid_value("The e-mail domain is not one of this tenant's verified domains.")
    return email


def _unique_username(email: str) -> str:
    user_model = get_user_model()
    base = email.lower()[:140]
    candidate = base
    while user_model.objects.filter(username=candidate).exists():
        candidate = f"{base}-{secrets.token_hex(3)}"
    return candidate


def _audit(
    action: str, *, scim_user: ScimUser, actor: Any, request: HttpRequest | None, **changes: Any
) -> None:
    audit_record(
        action,
        tenant=scim_user.tenant,
        actor=actor,
        request=request,
        target_type="user",
        target_id=scim_user.user_id,
        target_label=scim_user.user.get_username(),
        changes={"scim_id": str(scim_user.scim_id), **changes},
    )


def user_data(scim_user: ScimUser) -> UserData:
    """What the SCIM client sees of `scim_user` now (PATCH starts from it)."""
    user = scim_user.user
    return UserData(
        user_name=scim_user.user_name or user.email,
        email=user.email,
        external_id=scim_user.external_id,
        given_name=user.first_name,
        family_name=user.last_name,
        active=scim_user.active,
    )


def scim_access_sync(*, scim_user: ScimUser, request: HttpRequest | None = None) -> Membership | None:
    """Make the user's membership what their groups grant now (SCIM groups + the IdP's at last sign-in).

    No mapped group: no membership (a SCIM-provisioned user gets no default role).
    """
    tenant, user = scim_user.tenant, scim_user.user
    if not scim_user.active:
        return None
    claimed = ExternalIdentity.objects.filter(identity_provider__tenant=tenant, user=user).values_list(
        "groups", flat=True
    )
    groups = user_groups(tenant=tenant, user=user, claimed=tuple(g for row in claimed for g in row))
    return membership_sync(
        tenant=tenant,
        user=user,
        grant=role_grant(tenant=tenant, groups=groups),
        source=MembershipSource.SCIM,
        reason="scim_groups",
        request=request,
    )


def _deactivate(*, scim_user: ScimUser, actor: Any, request: HttpRequest | None) -> None:
    """Take the user's access to the tenant away now: membership, sessions, management tokens, account."""
    tenant, user = scim_user.tenant, scim_user.user
    membership = Membership.objects.filter(tenant=tenant, user=user).first()
    if membership is not None and membership.is_break_glass:
        _audit("scim.user_deactivated", scim_user=scim_user, actor=actor, request=request, break_glass=True)
        return
    membership_sync(
        tenant=tenant, user=user, grant=None, source=MembershipSource.SCIM, reason="scim_deactivated",
        request=request,
    )  # fmt: skip
    tokens = list(ManagementToken.objects.filter(tenant=tenant, user=user, revoked_at__isnull=True))
    for token in tokens:
        management_token_revoke(token=token, actor=actor, request=request)
    sessions_end(user=user)
    disabled = False
    if not user.is_staff and user.is_active and not Membership.objects.filter(user=user).exists():
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        user.is_active, disabled = False, True
    _audit(
        "scim.user_deactivated",
        scim_user=scim_user,
        actor=actor,
        request=request,
        tokens_revoked=len(tokens),
        account_disabled=disabled,
    )


def _reactivate(*, scim_user: ScimUser, actor: Any, request: HttpRequest | None) -> None:
    user = scim_user.user
    if not user.is_active:
        get_user_model().objects.filter(pk=user.pk).update(is_active=True)
        user.is_active = True
    membership = scim_access_sync(scim_user=scim_user, request=request)
    _audit(
        "scim.user_reactivated",
        scim_user=scim_user,
        actor=actor,
        request=request,
        role=membership.role if membership else None,
    )


# --- users -------------------------------------------------------------------------------------------------
def scim_user_create(
    *, tenant: Tenant, data: UserData, actor: Any, request: HttpRequest | None = None
) -> ScimUser:
    """Provision a user: link the account with that address if there is one, else create it (no password).

    The address must be in a verified domain of the tenant. No role yet: groups bring it.
    """
    email = _checked_email(tenant, data.email)
    if ScimUser.objects.filter(tenant=tenant, user_name__iexact=data.user_name).exists():
        raise uniqueness("A user with this userName exists.")
    if data.external_id and ScimUser.objects.filter(tenant=tenant, external_id=data.external_id).exists():
        raise uniqueness("A user with this externalId exists.")
    user_model = get_user_model()
    try:
        with transaction.atomic():
            user = user_model.objects.select_for_update().filter(email__iexact=email).first()
            linked = user is not None
            if user is None:
                user = user_model(username=_unique_username(email), email=email)
                user.set_unusable_password()
            elif user.is_staff:  # an operator's account is the platform's, never a tenant IdP's to manage
                raise uniqueness("This account cannot be provisioned.")
            elif ScimUser.objects.filter(tenant=tenant, user=user).exists():
                raise uniqueness("This account is already provisioned in this tenant.")
            user.first_name, user.last_name = data.given_name, data.family_name
            user.save()
            scim_user = ScimUser.objects.create(
                tenant=tenant,
                user=user,
                user_name=data.user_name,
                external_id=data.external_id,
                active=data.active,
            )
    except IntegrityError:  # a concurrent create of the same userName/externalId/account
        raise uniqueness("This user exists.") from None
    _audit("scim.user_created", scim_user=scim_user, actor=actor, request=request, linked=linked)
    if not data.active:
        _deactivate(scim_user=scim_user, actor=actor, request=request)
    elif not user.is_active:
        _reactivate(scim_user=scim_user, actor=actor, request=request)
    return scim_user


def scim_user_update(
    *, scim_user: ScimUser, data: UserData, actor: Any, request: HttpRequest | None = None
) -> ScimUser:
    """Apply a PUT or PATCH result; a change of `active` deactivates or reactivates."""
    before = user_data(scim_user)
    changed = [name for name in UserData.__dataclass_fields__ if getattr(before, name) != getattr(data, name)]
    if not changed:
        return scim_user
    tenant, user = scim_user.tenant, scim_user.user
    if data.email.lower() != before.email.lower():
        _checked_email(tenant, before.email)  # the tenant must still own the old address's domain, too
        email = _checked_email(tenant, data.email)
        if get_user_model().objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
            raise uniqueness("Another account has this e-mail address.")
        user.email = email
    if (
        data.user_name.lower() != before.user_name.lower()
        and ScimUser.objects.filter(tenant=tenant, user_name__iexact=data.user_name)
        .exclude(pk=scim_user.pk)
        .exists()
    ):
        raise uniqueness("A user with this userName exists.")
    if (
        data.external_id != before.external_id
        and data.external_id
        and ScimUser.objects.filter(tenant=tenant, external_id=data.external_id)
        .exclude(pk=scim_user.pk)
        .exists()
    ):
        raise uniqueness("A user with this externalId exists.")
    user.first_name, user.last_name = data.given_name, data.family_name
    scim_user.user_name, scim_user.external_id, scim_user.active = (
        data.user_name,
        data.external_id,
        data.active,
    )
    try:
        with transaction.atomic():
            user.save(update_fields=["email", "first_name", "last_name"])
            scim_user.save(update_fields=["user_name", "external_id", "active", "updated_at"])
    except IntegrityError:
        raise uniqueness("This user exists.") from None
    _audit("scim.user_updated", scim_user=scim_user, actor=actor, request=request, fields=changed)
    if before.active and not data.active:
        _deactivate(scim_user=scim_user, actor=actor, request=request)
    elif data.active and not before.active:
        _reactivate(scim_user=scim_user, actor=actor, request=request)
    return scim_user


def scim_user_delete(*, scim_user: ScimUser, actor: Any, request: HttpRequest | None = None) -> None:
    """DELETE: deactivate as for active=false, then forget the SCIM record (the account stays, disabled)."""
    if scim_user.active:
        scim_user.active = False
        scim_user.save(update_fields=["active", "updated_at"])
        _deactivate(scim_user=scim_user, actor=actor, request=request)
    _audit("scim.user_deleted", scim_user=scim_user, actor=actor, request=request)
    scim_user.delete()


# --- groups ------------------------------------------------------------------------------------------------
def _members(tenant: Tenant, ids: Iterable[str], *, strict: bool = True) -> list[ScimUser]:
    """The tenant's SCIM users with these ids; an unknown id (or another tenant's) is a 400 when strict."""
    wanted: set[uuid.UUID] = set()
    for raw in ids:
        try:
            wanted.add(uuid.UUID(raw))
        except ValueError:
            if strict:
                raise invalid_value("Unknown member.") from None
    found = list(ScimUser.objects.filter(tenant=tenant, scim_id__in=wanted).select_related("user", "tenant"))
    if strict and len(found) != len(wanted):
        raise invalid_value("Unknown member.")
    return found


def _resync(scim_users: Iterable[ScimUser], request: HttpRequest | None) -> None:
    for scim_user in scim_users:
        scim_access_sync(scim_user=scim_user, request=request)


def _group_audit(
    action: str, *, group: ScimGroup, actor: Any, request: HttpRequest | None, **changes: Any
) -> None:
    audit_record(
        action,
        tenant=group.tenant,
        actor=actor,
        request=request,
        target_type="scim_group",
        target_id=str(group.scim_id),
        target_label=group.display_name,
        changes=changes,
    )


def scim_group_create(
    *, tenant: Tenant, data: GroupData, actor: Any, request: HttpRequest | None = None
) -> ScimGroup:
    members = _members(tenant, data.members or ())
    try:
        with transaction.atomic():
            group = ScimGroup.objects.create(
                tenant=tenant, display_name=data.display_name, external_id=data.external_id
            )
            group.members.set(members)
    except IntegrityError:
        raise uniqueness("A group with this displayName exists.") from None
    _group_audit("scim.group_created", group=group, actor=actor, request=request, members=len(members))
    _resync(members, request)
    return group


def scim_group_update(
    *, group: ScimGroup, change: GroupChange, actor: Any, request: HttpRequest | None = None
) -> ScimGroup:
    """Rename a group and change its members; members whose groups changed get their new role now."""
    tenant = group.tenant
    current = {m.pk: m for m in group.members.select_related("user", "tenant")}
    if change.remove_all:
        after = {}
    elif change.replace_members is not None:
        after = {m.pk: m for m in _members(tenant, change.replace_members)}
    else:
        after = dict(current)
    if not change.remove_all:
        after.update({m.pk: m for m in _members(tenant, change.add)})
        for m in _members(tenant, change.remove, strict=False):  # removing someone absent: no error
            after.pop(m.pk, None)
    renamed = change.display_name is not None and change.display_name != group.display_name
    fields = []
    if renamed:
        group.display_name = change.display_name or group.display_name
        fields.append("display_name")
    if change.external_id is not None and change.external_id != group.external_id:
        group.external_id = change.external_id
        fields.append("external_id")
    added, removed = set(after) - set(current), set(current) - set(after)
    if not (fields or added or removed):
        return group
    try:
        with transaction.atomic():
            if fields:
                group.save(update_fields=[*fields, "updated_at"])
            if removed:
                group.members.remove(*removed)
            if added:
                group.members.add(*added)
    except IntegrityError:
        raise uniqueness("A group with this displayName exists.") from None
    _group_audit(
        "scim.group_updated",
        group=group,
        actor=actor,
        request=request,
        fields=fields,
        members_added=len(added),
        members_removed=len(removed),
    )
    affected = (
        {**current, **after}
        if renamed
        else {pk: m for pk, m in {**current, **after}.items() if pk in added | removed}
    )
    _resync(affected.values(), request)
    return group


def scim_group_delete(*, group: ScimGroup, actor: Any, request: HttpRequest | None = None) -> None:
    members = list(group.members.select_related("user", "tenant"))
    _group_audit("scim.group_deleted", group=group, actor=actor, request=request, members=len(members))
    group.delete()
    _resync(members, request)
