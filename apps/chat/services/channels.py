"""Writes of channels and their API keys (control database), each checked against the actor's role, audited.

An API key is `hub_<prefix>_<secret>`: shown once, stored only as the SHA-256 hash of the whole string, with
the prefix kept in clear to tell keys apart in the console and the audit log. Every change that could make a
cached authentication stale (revoke, rotate, channel change) drops the affected keys from the auth cache.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.chat.auth import forget_channel_keys, forget_keys
from apps.chat.models import Action, ApiKey, ApiKeyScope, Channel, ChannelKind
from apps.core.context import tenant_context
from apps.core.errors import Conflict, ValidationFailed
from apps.integrations.conf import connector_class
from apps.integrations.models import Connection
from apps.knowledge.selectors import kb_get
from apps.tenants import roles
from apps.tenants.models import Membership, Tenant, locale_validator
from apps.tenants.services import management_token_hash
from connectors.errors import ConnectorError, InvalidConfig
from connectors.http import HttpSession

API_KEY_SCHEME = "hub"
DEFAULT_ROTATION_OVERLAP = timedelta(hours=24)
MAX_OVERLAP_HOURS = 720
MAX_ROTATION_OVERLAP = timedelta(hours=MAX_OVERLAP_HOURS)

# The channel fields a change may name, and the vendor stream a connection field must be able to write.
CHANNEL_FIELDS = (
    "name",
    "kind",
    "default_locale",
    "allowed_actions",
    "knowledge_base_id",
    "content_region",
    "ticket_connection_id",
    "lead_connection_id",
)
CONNECTION_STREAMS = {"ticket_connection_id": "tickets", "lead_connection_id": "leads"}


def api_key_hash(plaintext: str) -> str:
    """The SHA-256 hex digest stored for a key (the same digest management tokens use)."""
    return management_token_hash(plaintext)


def require_channel_manager(*, tenant: Tenant, actor: Any) -> None:
    """Raise PermissionDenied unless `actor` may manage the tenant's channels. `actor=None` is the system."""
    if actor is None:
        return
    membership = None
    if getattr(actor, "pk", None) is not None:
        membership = Membership.objects.filter(tenant=tenant, user_id=actor.pk).first()
    if not roles.can(actor, membership, roles.MANAGE_CHANNELS):
        raise PermissionDenied(_("Your role in this tenant does not allow this."))


# --- channels ------------------------------------------------------------------------------------------
def _clean_actions(value: Any, errors: dict[str, list[str]]) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        errors["allowed_actions"] = [_("Give a list of actions.")]
        return []
    unknown = sorted(set(value) - set(Action.values))
    if unknown:
        errors["allowed_actions"] = [
            _("Unknown actions: %(actions)s. Use %(allowed)s.")
            % {"actions": ", ".join(unknown), "allowed": ", ".join(Action.values)}
        ]
    return [a for a in Action.values if a in value]  # the documented order, no repeats


def _check_connection(*, field: str, pk: Any, errors: dict[str, list[str]]) -> None:
    """The connection must be the tenant's and its connector must be able to write the field's stream."""
    connection = Connection.objects.filter(pk=pk).first()
    if connection is None:
        errors[field] = [_("No such connection in this tenant.")]
        return
    stream = CONNECTION_STREAMS[field]
    try:  # config parsing only, no network
        connector = connector_class(connection.kind)(connection.connector_config(), session=HttpSession())
        connector.stream(stream, for_write=True)
    except (ConnectorError, InvalidConfig):
        errors[field] = [
            _("The connection “%(name)s” cannot create %(stream)s.")
            % {"name": connection.name, "stream": stream}
        ]


def _validate(*, tenant: Tenant, data: dict[str, Any]) -> dict[str, Any]:
    """Check and normalize channel fields (only those present in `data`); raise ValidationFailed."""
    errors: dict[str, list[str]] = {}
    clean = dict(data)
    if "name" in data:
        clean["name"] = str(data["name"] or "").strip()
        if not clean["name"]:
            errors["name"] = [_("This field is required.")]
        elif len(clean["name"]) > 100:
            errors["name"] = [_("Use at most 100 characters.")]
    if "kind" in data and data["kind"] not in ChannelKind.values:
        errors["kind"] = [_("Use one of %(kinds)s.") % {"kinds": ", ".join(ChannelKind.values)}]
    if "default_locale" in data:
        locale = str(data["default_locale"] or "")
        try:
            locale_validator(locale)
        except ValidationError as exc:
            errors["default_locale"] = list(exc.messages)
        else:
            if tenant.enabled_locales and locale not in tenant.enabled_locales:
                errors["default_locale"] = [
                    _("Use one of the tenant's locales: %(locales)s.")
                    % {"locales": ", ".join(tenant.enabled_locales)}
                ]
    if "allowed_actions" in data:
        clean["allowed_actions"] = _clean_actions(data["allowed_actions"], errors)
    if "content_region" in data:
        clean["content_region"] = region = str(data["content_region"] or "")
        if region and region not in settings.HUB_REGIONS:
            errors["content_region"] = [
                _("Unknown region %(region)s: use one of %(regions)s.")
                % {"region": region, "regions": ", ".join(settings.HUB_REGIONS)}
            ]
    with tenant_context(tenant):
        if data.get("knowledge_base_id"):
            kb = kb_get(kb_id=data["knowledge_base_id"])
            if kb is None:
                errors["knowledge_base_id"] = [_("No such knowledge base in this tenant.")]
            else:
                clean["knowledge_base_id"] = kb.pk
        for field in CONNECTION_STREAMS:
            if data.get(field):
                _check_connection(field=field, pk=data[field], errors=errors)
    for field in ("knowledge_base_id", *CONNECTION_STREAMS):
        if field in data and not data[field]:
            clean[field] = None
    if errors:
        raise ValidationFailed(_("Please correct the errors below."), errors)
    return clean


def _save(channel: Channel, **kwargs: Any) -> None:
    """Save in a savepoint so a duplicate name becomes a field error and the transaction stays usable."""
    try:
        with transaction.atomic():
            channel.save(**kwargs)
    except IntegrityError:
        raise ValidationFailed(
            _("Please correct the errors below."), {"name": [_("A channel with this name already exists.")]}
        ) from None


def _audit_values(channel: Channel, fields: Iterable[str]) -> dict[str, Any]:
    return {f: str(v) if (v := getattr(channel, f)) is not None and f.endswith("_id") else v for f in fields}


def channel_create(
    *,
    tenant: Tenant,
    name: str,
    kind: str = ChannelKind.WEB,
    default_locale: str | None = None,
    allowed_actions: Sequence[str] = (),
    knowledge_base_id: Any = None,
    content_region: str = "",
    ticket_connection_id: Any = None,
    lead_connection_id: Any = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Channel:
    """Create a channel of `tenant` (enabled, with no keys yet)."""
    require_channel_manager(tenant=tenant, actor=actor)
    clean = _validate(
        tenant=tenant,
        data={
            "name": name,
            "kind": kind,
            "default_locale": default_locale or tenant.default_locale,
            "allowed_actions": list(allowed_actions),
            "knowledge_base_id": knowledge_base_id,
            "content_region": content_region,
            "ticket_connection_id": ticket_connection_id,
            "lead_connection_id": lead_connection_id,
        },
    )
    channel = Channel(tenant=tenant, **clean)
    _save(channel)
    audit_record(
        "channel.created",
        tenant=tenant,
        actor=actor,
        request=request,
        target=channel,
        changes=_audit_values(channel, CHANNEL_FIELDS),
    )
    return channel


def channel_update(
    *, channel: Channel, changes: Mapping[str, Any], actor: Any = None, request: HttpRequest | None = None
) -> Channel:
    """Change the named fields of a channel (`changes` holds only what changes; see CHANNEL_FIELDS)."""
    unknown = set(changes) - set(CHANNEL_FIELDS)
    if unknown:
        raise ValueError(f"channel_update: unknown fields {sorted(unknown)}")
    tenant = channel.tenant
    require_channel_manager(tenant=tenant, actor=actor)
    clean = _validate(tenant=tenant, data=dict(changes))
    changed = [f for f, v in clean.items() if getattr(channel, f) != v]
    if not changed:
        return channel
    before = _audit_values(channel, changed)
    for field in changed:
        setattr(channel, field, clean[field])
    _save(channel, update_fields=[*changed, "updated_at"])
    forget_channel_keys(channel_id=channel.pk)
    audit_record(
        "channel.updated",
        tenant=tenant,
        actor=actor,
        request=request,
        target=channel,
        changes={"before": before, "after": _audit_values(channel, changed)},
    )
    return channel


def channel_set_enabled(
    *, channel: Channel, enabled: bool, actor: Any = None, request: HttpRequest | None = None
) -> Channel:
    """Enable or disable a channel; a disabled channel's keys get 403 at once (its keys stay as they are)."""
    require_channel_manager(tenant=channel.tenant, actor=actor)
    if channel.enabled != enabled:
        channel.enabled = enabled
        channel.save(update_fields=["enabled", "updated_at"])
        forget_channel_keys(channel_id=channel.pk)
        audit_record(
            "channel.enabled" if enabled else "channel.disabled",
            tenant=channel.tenant,
            actor=actor,
            request=request,
            target=channel,
        )
    return channel


# --- API keys ------------------------------------------------------------------------------------------
def _clean_key_input(
    *, name: str, scopes: Sequence[str], expires_at: datetime | None, errors: dict[str, list[str]]
) -> list[str]:
    if not name.strip():
        errors["name"] = [_("Give the key a name.")]
    elif len(name.strip()) > 100:
        errors["name"] = [_("Use at most 100 characters.")]
    unknown = sorted(set(scopes) - set(ApiKeyScope.values))
    if unknown:
        errors["scopes"] = [
            _("Unknown scopes: %(scopes)s. Use %(allowed)s.")
            % {"scopes": ", ".join(unknown), "allowed": ", ".join(ApiKeyScope.values)}
        ]
    elif not scopes:
        errors["scopes"] = [_("Choose at least one scope.")]
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = [_("The expiry must be in the future.")]
    return [s for s in ApiKeyScope.values if s in scopes]


def _issue(
    *, channel: Channel, name: str, scopes: list[str], expires_at: datetime | None, actor: Any
) -> tuple[ApiKey, str]:
    for _attempt in range(3):  # the 40-bit prefix collides in theory only; retry rather than fail
        prefix = f"{API_KEY_SCHEME}_{secrets.token_hex(5)}"
        plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            tenant_id=channel.tenant_id,
            channel=channel,
            name=name,
            prefix=prefix,
            key_hash=api_key_hash(plaintext),
            scopes=scopes,
            expires_at=expires_at,
            created_by=actor if getattr(actor, "pk", None) is not None else None,
        )
        try:
            with transaction.atomic():
                key.save()
        except IntegrityError:
            continue
        return key, plaintext
    raise Conflict(_("Could not issue a unique key; try again."))


def api_key_create(
    *,
    channel: Channel,
    name: str,
    scopes: Sequence[str] = (ApiKeyScope.CHAT,),
    expires_at: datetime | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> tuple[ApiKey, str]:
    """Issue a key for `channel`; return it with its plaintext, which is shown once and never stored."""
    require_channel_manager(tenant=channel.tenant, actor=actor)
    errors: dict[str, list[str]] = {}
    clean_scopes = _clean_key_input(name=name, scopes=list(scopes), expires_at=expires_at, errors=errors)
    if errors:
        raise ValidationFailed(_("The key could not be created."), errors)
    key, plaintext = _issue(
        channel=channel, name=name.strip(), scopes=clean_scopes, expires_at=expires_at, actor=actor
    )
    audit_record(
        "api_key.created",
        tenant=channel.tenant,
        actor=actor,
        request=request,
        target=key,
        changes={
            "channel": str(channel.pk),
            "name": key.name,
            "prefix": key.prefix,
            "scopes": clean_scopes,
            "expires_at": expires_at,
        },
    )
    return key, plaintext


def api_key_revoke(*, key: ApiKey, actor: Any = None, request: HttpRequest | None = None) -> ApiKey:
    """Revoke a key for good, effective at once on every process (idempotent: the first time stays)."""
    require_channel_manager(tenant=key.channel.tenant, actor=actor)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at", "updated_at"])
        forget_keys(key_hashes=[key.key_hash])
        audit_record(
            "api_key.revoked",
            tenant=key.channel.tenant,
            actor=actor,
            request=request,
            target=key,
            changes={"prefix": key.prefix},
        )
    return key


def api_key_rotate(
    *,
    key: ApiKey,
    overlap: timedelta = DEFAULT_ROTATION_OVERLAP,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> tuple[ApiKey, str]:
    """Issue a successor of `key` (same channel, name and scopes) and let `key` expire after `overlap`.

    Both keys work during the overlap, so a channel can switch without downtime. The successor keeps the
    old key's expiry when that lies beyond the overlap.
    """
    channel = key.channel
    require_channel_manager(tenant=channel.tenant, actor=actor)
    now = timezone.now()
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise Conflict(_("Only an active key can be rotated; create a new key instead."))
    if overlap < timedelta(0) or overlap > MAX_ROTATION_OVERLAP:
        raise ValidationFailed(
            _("The key could not be rotated."),
            {"overlap_hours": [_("Use between 0 and %(max)s hours.") % {"max": MAX_OVERLAP_HOURS}]},
        )
    old_expires = now + overlap
    keep_expiry = key.expires_at if key.expires_at is not None and key.expires_at > old_expires else None
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is not None or (locked.expires_at is not None and locked.expires_at <= now):
            raise Conflict(_("Only an active key can be rotated; create a new key instead."))
        new_key, plaintext = _issue(
            channel=channel, name=key.name, scopes=list(key.scopes), expires_at=keep_expiry, actor=actor
        )
        key.expires_at = min(old_expires, key.expires_at) if key.expires_at else old_expires
        key.save(update_fields=["expires_at", "updated_at"])
        audit_record(
            "api_key.rotated",
            tenant=channel.tenant,
            actor=actor,
            request=request,
            target=key,
            changes={
                "prefix": key.prefix,
                "successor_prefix": new_key.prefix,
                "expires_at": key.expires_at,
                "overlap_hours": round(overlap.total_seconds() / 3600, 2),
            },
        )
    forget_keys(key_hashes=[key.key_hash])
    return new_key, plaintext
