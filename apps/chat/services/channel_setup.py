"""Writes of a channel's outward setup (issue 17): its platform account, widget key, allowed origins and
identity secret. Each is checked against the actor's role and audited; secrets never reach an audit event.

The platform account is an integrations Connection (region database) whose id the Channel (control database)
keeps. No transaction spans both, so the order of the writes is the safety: the Connection is written first,
the Channel second, and when the Channel write fails the new Connection is deleted again. An orphan left by a
crash between the two is an unlinked connection (visible on the connections page, harmless: nothing sends
through it), never a channel that points at nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import reverse
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.chat.models import Channel, ChannelKind, IdentityMode
from apps.chat.services.channels import channel_create, require_channel_manager
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.core.public import public_base_url
from apps.integrations.models import Connection
from apps.integrations.services.connections import (
    TestResult,
    connection_create,
    connection_delete,
    connection_test,
    connection_update,
)
from apps.tenants.models import Tenant

#: Channel kinds whose platform account is a Connection of the same kind (connectors/registry.py).
PLATFORM_KINDS = frozenset({ChannelKind.WHATSAPP, ChannelKind.SLACK, ChannelKind.TEAMS, ChannelKind.SMS})
#: Kinds whose users the site or bot vouches for (WhatsApp/SMS numbers are verified by the platform).
IDENTITY_KINDS = frozenset({ChannelKind.WEB, ChannelKind.CUSTOM})
WIDGET_KEY_PREFIX = "hubw_"
MAX_ORIGINS = 50
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


# --- derived values (no writes) -------------------------------------------------------------------------
def channel_webhook_url(channel: Channel, request: HttpRequest | None = None) -> str:
    """Where the platform posts this channel's events (the endpoint lives in apps/chat, another slice)."""
    return f"{public_base_url(request)}/hooks/channels/{channel.pk}/"


def widget_script_url(request: HttpRequest | None = None) -> str:
    url = static("widget/widget.js")
    return url if url.startswith(("http://", "https://")) else f"{public_base_url(request)}{url}"


def widget_snippet(channel: Channel, request: HttpRequest | None = None) -> str:
    """The tag a site pastes to embed the widget (empty until the channel has a widget key)."""
    if not channel.widget_key:
        return ""
    return (
        f'<script src="{widget_script_url(request)}" data-channel="{channel.pk}" '
        f'data-key="{channel.widget_key}" async></script>'
    )


def identity_secret_is_set(channel: Channel) -> bool:
    """Whether the channel has an identity secret, without decrypting it (no tenant context, no query)."""
    attribute = Channel.__dict__["identity_secret"]  # the encrypted field's descriptor
    data = channel.__dict__
    if attribute.plain_key in data:
        return bool(data[attribute.plain_key])
    return data.get(attribute.field.attname) is not None


def channel_preview_url(channel: Channel) -> str:
    return reverse("chat:channel-preview", args=[channel.tenant.slug, channel.pk])


# --- validation -----------------------------------------------------------------------------------------
def origins_require_https() -> bool:
    return bool(getattr(settings, "HUB_WIDGET_ORIGINS_REQUIRE_HTTPS", False))


def clean_origins(values: Any) -> list[str]:
    """Normalize allowed origins (scheme://host[:port]); raise ValidationFailed naming each bad one."""
    if isinstance(values, str):
        values = values.replace(",", "\n").splitlines()
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise ValidationFailed(
            _("Please correct the errors below."), {"allowed_origins": [_("Give a list of origins.")]}
        )
    problems: list[str] = []
    clean: list[str] = []
    for raw in (v.strip() for v in values):
        if not raw:
            continue
        parts = urlsplit(raw)
        try:
            port = parts.port
        except ValueError:
            port, parts = None, urlsplit("")
        host = (parts.hostname or "").lower()
        if (
            parts.scheme not in ("http", "https")
            or not host
            or parts.username is not None
            or parts.password is not None
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            problems.append(
                _("“%(origin)s” is not an origin: use scheme://host[:port], e.g. https://shop.example.com.")
                % {"origin": raw[:200]}
            )
            continue
        local = host in LOCAL_HOSTS or f"[{host}]" in LOCAL_HOSTS
        if parts.scheme != "https" and origins_require_https() and not local:
            problems.append(
                _("“%(origin)s” must use https:// (plain http is allowed for localhost only).")
                % {"origin": raw[:200]}
            )
            continue
        shown_host = f"[{host}]" if ":" in host else host
        origin = f"{parts.scheme}://{shown_host}" + (f":{port}" if port is not None else "")
        if origin not in clean:
            clean.append(origin)
    if len(clean) > MAX_ORIGINS:
        problems.append(_("Use at most %(max)s origins.") % {"max": MAX_ORIGINS})
    if problems:
        raise ValidationFailed(_("Please correct the errors below."), {"allowed_origins": problems})
    return clean


# --- platform account -----------------------------------------------------------------------------------
def platform_connection(channel: Channel) -> Connection | None:
    """The channel's platform Connection, read in its tenant's region (None: not set up, or gone)."""
    if channel.platform_connection_id is None:
        return None
    with tenant_context(channel.tenant):
        return Connection.objects.filter(pk=channel.platform_connection_id).first()


def _connection_name(name: str, kind: str) -> str:
    return f"{name} ({kind} channel)"[:100]


def _new_connection(
    *,
    tenant: Tenant,
    kind: str,
    channel_name: str,
    endpoint_region: str | None,
    settings_: Mapping[str, Any],
    credentials: Mapping[str, Any],
    actor: Any,
    request: HttpRequest | None,
) -> Connection:
    base = _connection_name(channel_name, kind)
    for attempt in range(3):
        name = base if attempt == 0 else f"{base[:93]} {secrets.token_hex(3)}"
        try:
            return connection_create(
                tenant=tenant,
                kind=kind,
                name=name,
                endpoint_region=endpoint_region or tenant.region_code,
                settings=settings_,
                credentials=credentials,
                actor=actor,
                request=request,
            )
        except ValidationFailed as exc:
            name_taken = set(exc.errors or {}) == {"name"}
            if not name_taken:
                raise
    raise ValidationFailed(
        _("Please correct the errors below."), {"name": [_("Choose another channel name.")]}
    )


def channel_create_with_platform(
    *,
    tenant: Tenant,
    channel_data: Mapping[str, Any],
    platform: Mapping[str, Any] | None = None,
    identity_mode: str | None = None,
    identity_secret: str | None = None,
    allowed_origins: Sequence[str] | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Channel:
    """Create a channel with its setup in one flow: platform Connection first, then the channel.

    `platform` = {"settings": {...}, "credentials": {...}, "endpoint_region": "eu"} for the platform kinds
    (refused elsewhere; without it the channel is created "not set up" and gets its account later). A web
    widget gets its widget key at once.
    """
    require_channel_manager(tenant=tenant, actor=actor)
    kind = str(channel_data.get("kind") or ChannelKind.WEB)
    extra = _clean_extra(
        kind=kind, identity_mode=identity_mode, identity_secret=identity_secret, origins=allowed_origins
    )
    connection: Connection | None = None
    if kind in PLATFORM_KINDS and platform:
        connection = _new_connection(
            tenant=tenant,
            kind=kind,
            channel_name=str(channel_data.get("name") or ""),
            endpoint_region=platform.get("endpoint_region"),
            settings_=platform.get("settings") or {},
            credentials=platform.get("credentials") or {},
            actor=actor,
            request=request,
        )
    elif platform:
        raise ValidationFailed(
            _("Please correct the errors below."),
            {"platform": [_("Only WhatsApp, Slack, Teams and SMS channels have a platform account.")]},
        )
    try:
        with transaction.atomic(), tenant_context(tenant):
            channel = channel_create(tenant=tenant, **dict(channel_data), actor=actor, request=request)
            changed: list[str] = []
            if connection is not None:
                channel.platform_connection_id = connection.pk
                changed.append("platform_connection_id")
            if kind == ChannelKind.WEB:
                channel.widget_key = _widget_key()
                changed.append("widget_key")
            for field, value in extra.items():
                setattr(channel, field, value)
                changed.append(field)
            if changed:
                channel.save(update_fields=[*changed, "updated_at"])
                audit_record(
                    "channel.setup_changed",
                    tenant=tenant,
                    actor=actor,
                    request=request,
                    target=channel,
                    changes=_setup_audit(channel, changed),
                )
    except BaseException:
        if connection is not None:  # compensate: no orphan platform account for a channel that is not
            connection_delete(connection=connection, tenant=tenant, actor=actor, request=request)
        raise
    return channel


def channel_platform_set(
    *,
    channel: Channel,
    settings_: Mapping[str, Any] | None = None,
    credentials: Mapping[str, Any] | None = None,
    endpoint_region: str | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Connection:
    """Create or change the channel's platform account; a blank credential keeps the stored one."""
    tenant = channel.tenant
    require_channel_manager(tenant=tenant, actor=actor)
    if channel.kind not in PLATFORM_KINDS:
        raise ValidationFailed(
            _("Please correct the errors below."),
            {"platform": [_("Only WhatsApp, Slack, Teams and SMS channels have a platform account.")]},
        )
    connection = platform_connection(channel)
    if connection is not None and connection.kind == channel.kind:
        return connection_update(
            connection=connection,
            tenant=tenant,
            endpoint_region=endpoint_region,
            settings=settings_,
            credentials=credentials,
            actor=actor,
            request=request,
        )
    connection = _new_connection(
        tenant=tenant,
        kind=channel.kind,
        channel_name=channel.name,
        endpoint_region=endpoint_region,
        settings_=settings_ or {},
        credentials=credentials or {},
        actor=actor,
        request=request,
    )
    try:
        channel.platform_connection_id = connection.pk
        channel.save(update_fields=["platform_connection_id", "updated_at"])
    except BaseException:
        connection_delete(connection=connection, tenant=tenant, actor=actor, request=request)
        raise
    audit_record(
        "channel.setup_changed",
        tenant=tenant,
        actor=actor,
        request=request,
        target=channel,
        changes=_setup_audit(channel, ["platform_connection_id"]),
    )
    return connection


def channel_platform_test(
    *, channel: Channel, actor: Any = None, request: HttpRequest | None = None
) -> TestResult:
    """Call the platform with the channel's account (the connection's test: stored, audited, redacted)."""
    require_channel_manager(tenant=channel.tenant, actor=actor)
    connection = platform_connection(channel)
    if connection is None:
        return TestResult(ok=False, message=_("Set up the platform account first."))
    return connection_test(connection=connection, tenant=channel.tenant, actor=actor, request=request)


# --- widget and identity ----------------------------------------------------------------------------------
def _widget_key() -> str:
    return f"{WIDGET_KEY_PREFIX}{secrets.token_urlsafe(24)}"


def _clean_extra(
    *, kind: str, identity_mode: str | None, identity_secret: str | None, origins: Sequence[str] | None
) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    if origins is not None:
        if kind != ChannelKind.WEB and origins:
            errors["allowed_origins"] = [_("Only a web widget channel has allowed origins.")]
        else:
            try:
                clean["allowed_origins"] = clean_origins(list(origins))
            except ValidationFailed as exc:
                errors.update(exc.errors or {})
    if identity_mode is not None:
        if identity_mode not in IdentityMode.values:
            errors["identity_mode"] = [_("Use one of %(modes)s.") % {"modes": ", ".join(IdentityMode.values)}]
        elif identity_mode != IdentityMode.NONE and kind not in IDENTITY_KINDS:
            errors["identity_mode"] = [
                _("This platform verifies its users itself; identity settings are for web and custom bots.")
            ]
        else:
            clean["identity_mode"] = identity_mode
    if identity_secret not in (None, ""):
        if kind not in IDENTITY_KINDS:
            errors["identity_secret"] = [_("Only web and custom channels have an identity secret.")]
        elif not isinstance(identity_secret, str) or len(identity_secret) < 32:
            errors["identity_secret"] = [_("Use at least 32 characters (generate one to be safe).")]
        else:
            clean["identity_secret"] = identity_secret
    if errors:
        raise ValidationFailed(_("Please correct the errors below."), errors)
    return clean


def _setup_audit(channel: Channel, fields: Sequence[str]) -> dict[str, Any]:
    """What changed, without secrets: the identity secret appears as 'set', the widget key by its start."""
    values: dict[str, Any] = {}
    for field in fields:
        if field == "identity_secret":
            values[field] = "set" if channel.identity_secret else "cleared"
        elif field == "widget_key":
            values[field] = (channel.widget_key or "")[:9] + "…"
        elif field == "platform_connection_id":
            values[field] = str(channel.platform_connection_id or "")
        else:
            values[field] = getattr(channel, field)
    return values


def channel_setup_update(
    *,
    channel: Channel,
    identity_mode: str | None = None,
    identity_secret: str | None = None,
    allowed_origins: Sequence[str] | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Channel:
    """Change identity mode, identity secret (write-only) or allowed origins; None leaves a part as it is."""
    require_channel_manager(tenant=channel.tenant, actor=actor)
    with tenant_context(channel.tenant):  # the identity secret is encrypted with the tenant's key
        return _setup_update(
            channel=channel,
            identity_mode=identity_mode,
            identity_secret=identity_secret,
            allowed_origins=allowed_origins,
            actor=actor,
            request=request,
        )


def _setup_update(
    *,
    channel: Channel,
    identity_mode: str | None,
    identity_secret: str | None,
    allowed_origins: Sequence[str] | None,
    actor: Any,
    request: HttpRequest | None,
) -> Channel:
    mode = identity_mode
    if mode not in (None, IdentityMode.NONE) and not (identity_secret or channel.identity_secret):
        raise ValidationFailed(
            _("Please correct the errors below."),
            {"identity_mode": [_("Generate or enter an identity secret first.")]},
        )
    clean = _clean_extra(
        kind=channel.kind, identity_mode=mode, identity_secret=identity_secret, origins=allowed_origins
    )
    changed = [f for f, v in clean.items() if getattr(channel, f) != v]
    if not changed:
        return channel
    before = {f: getattr(channel, f) for f in changed if f != "identity_secret"}
    for field in changed:
        setattr(channel, field, clean[field])
    channel.save(update_fields=[*changed, "updated_at"])
    action = "channel.identity_secret_rotated" if changed == ["identity_secret"] else "channel.setup_changed"
    audit_record(
        action,
        tenant=channel.tenant,
        actor=actor,
        request=request,
        target=channel,
        changes={"before": before, "after": _setup_audit(channel, changed)},
    )
    return channel


def channel_identity_secret_generate(
    *, channel: Channel, actor: Any = None, request: HttpRequest | None = None
) -> str:
    """Generate (or rotate) the identity secret; return it — shown once, stored encrypted, never again."""
    if channel.kind not in IDENTITY_KINDS:
        raise ValidationFailed(
            _("Please correct the errors below."),
            {"identity_secret": [_("Only web and custom channels have an identity secret.")]},
        )
    secret = secrets.token_urlsafe(32)
    channel_setup_update(channel=channel, identity_secret=secret, actor=actor, request=request)
    return secret


def channel_widget_key_rotate(
    *, channel: Channel, actor: Any = None, request: HttpRequest | None = None
) -> str:
    """Give the web widget a new public key (the old one stops at once); return it."""
    require_channel_manager(tenant=channel.tenant, actor=actor)
    if channel.kind != ChannelKind.WEB:
        raise ValidationFailed(
            _("Please correct the errors below."),
            {"widget_key": [_("Only a web widget channel has a widget key.")]},
        )
    old = channel.widget_key
    channel.widget_key = _widget_key()
    channel.save(update_fields=["widget_key", "updated_at"])
    audit_record(
        "channel.widget_key_rotated",
        tenant=channel.tenant,
        actor=actor,
        request=request,
        target=channel,
        changes={"before": (old or "")[:9] + "…" if old else None, "after": channel.widget_key[:9] + "…"},
    )
    return channel.widget_key
