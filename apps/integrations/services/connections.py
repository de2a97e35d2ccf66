"""Writes for connections: create, update, test, enable/disable, delete and per-connection access.

Every change is audited; credential values never reach an audit event, a log line or an error message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings as django_settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.core.context import as_ref, current_tenant, tenant_context
from apps.core.errors import HubError, ValidationFailed
from apps.integrations.conf import (
    build_connector,
    connector_class,
    connector_registry,
    endpoint_origins,
    url_origin,
)
from apps.integrations.models import CONNECTION_PERM, HUB_SECRET_KEYS, HUB_SETTING_KEYS, Connection
from apps.policies.services import transfer_check
from apps.tenants.selectors import region_list
from apps.tenants.services import object_permission_grant, object_permission_revoke
from connectors.base import ConfigField, Connector
from connectors.errors import (
    AddressNotAllowed,
    AuthExpired,
    AuthFailed,
    ConnectorError,
    CredentialsNotBound,
    InsecureUrl,
    InvalidConfig,
    RateLimited,
    RedirectRefused,
    VendorUnavailable,
)
from connectors.http import HttpSession, redact

logger = logging.getLogger(__name__)

#: Names the console and the API use for the connection's own fields; a connector setting may not reuse them.
RESERVED_NAMES = frozenset(
    {"name", "kind", "endpoint_region", "enabled", "field_map", "settings", "credentials"}
)


@dataclass(frozen=True, slots=True)
class TestResult:
    ok: bool
    message: str
    warnings: list[str] = field(default_factory=list)


# --- validation ------------------------------------------------------------------------------------------
def _coerce(config_field: ConfigField, value: Any) -> Any:
    """Turn form strings into the type the connector expects (taken from the field's default)."""
    default = config_field.default
    if value in (None, ""):
        return None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "on", "yes"):
            return True
        if text in ("false", "0", "off", "no"):
            return False
        raise ValueError(_("Enter true or false."))
    if isinstance(default, int):
        if isinstance(value, bool):
            raise ValueError(_("Enter a whole number."))
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(_("Enter a whole number.")) from None
    if not isinstance(value, str | int | float):
        raise ValueError(_("Enter a text value."))
    return str(value).strip()


def _clean_settings(
    cls: type[Connector], values: Mapping[str, Any], errors: dict[str, list[str]]
) -> dict[str, Any]:
    """Keep the connector's non-secret settings, typed; unknown names and bad choices become field errors."""
    schema = {f.name: f for f in cls.config_schema if not f.secret}
    cleaned: dict[str, Any] = {}
    for name in values:
        # Hub-owned keys are not the form's to set; connection_update carries the stored ones over.
        if name not in schema and name not in HUB_SETTING_KEYS:
            errors.setdefault(name, []).append(_("Unknown setting for this connector."))
    for name, config_field in schema.items():
        try:
            value = _coerce(config_field, values.get(name))
        except ValueError as exc:
            errors.setdefault(name, []).append(str(exc))
            continue
        if value is None:
            value = config_field.default
        if config_field.required and value in (None, ""):
            errors.setdefault(name, []).append(_("This field is required."))
        elif config_field.choices and value is not None and value not in config_field.choices:
            errors.setdefault(name, []).append(
                _("Choose one of: %(choices)s.") % {"choices": ", ".join(config_field.choices)}
            )
        elif config_field.url and value not in (None, ""):
            problem = url_problem(str(value))
            if problem:
                errors.setdefault(name, []).append(problem)
        cleaned[name] = value
    return cleaned


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an endpoint (None: fine): not http(s), no host, or http where https is required."""
    origin = url_origin(url)
    if not origin:
        return _("Enter a full URL, e.g. https://vendor.example.com.")
    if django_settings.HUB_OUTBOUND_REQUIRE_HTTPS and not origin.startswith("https://"):
        return _("Enter an https:// URL: credentials must never travel in clear text.")
    return None


def _clean_secrets(
    cls: type[Connector],
    values: Mapping[str, Any],
    current: Mapping[str, str],
    errors: dict[str, list[str]],
) -> dict[str, str]:
    """Merge new secret values over the current ones: a blank value keeps what is stored."""
    schema = {f.name: f for f in cls.config_schema if f.secret}
    merged = {k: v for k, v in current.items() if k in schema or k in HUB_SECRET_KEYS}
    for name, value in values.items():
        if name not in schema:
            errors.setdefault(name, []).append(_("Unknown credential for this connector."))
        elif value not in (None, ""):
            if not isinstance(value, str):
                errors.setdefault(name, []).append(_("Enter a text value."))
            else:
                merged[name] = value
    for name, config_field in schema.items():
        if config_field.required and not merged.get(name):
            errors.setdefault(name, []).append(_("This field is required."))
    return merged


def field_map_errors(cls: type[Connector], field_map: Any) -> list[str]:
    """Check overrides against the connector's default map: known streams and canonical fields only."""
    if not isinstance(field_map, Mapping):
        return [_("The field map must be an object of streams.")]
    problems: list[str] = []
    for stream, fields in field_map.items():
        defaults = cls.default_field_map.get(stream)
        if defaults is None:
            known = ", ".join(sorted(cls.default_field_map))
            problems.append(
                _("Unknown stream “%(stream)s” (known: %(known)s).") % {"stream": stream, "known": known}
            )
            continue
        if not isinstance(fields, Mapping):
            problems.append(
                _("Stream “%(stream)s” must map canonical fields to vendor fields.") % {"stream": stream}
            )
            continue
        for canonical, vendor in fields.items():
            if canonical not in defaults:
                problems.append(
                    _("Stream “%(stream)s” has no canonical field “%(field)s”.")
                    % {"stream": stream, "field": canonical}
                )
            elif not isinstance(vendor, str) or not vendor.strip():
                problems.append(
                    _("Stream “%(stream)s”: field “%(field)s” needs a vendor field name.")
                    % {"stream": stream, "field": canonical}
                )
    return problems


def _region_codes() -> set[str]:
    return set(region_list().values_list("code", flat=True))


def _check_residency(*, tenant: Any, kind: str, endpoint_region: str, request: HttpRequest | None) -> None:
    """Refuse a connection whose vendor endpoint lies in a region the tenant's data policy forbids."""
    try:
        transfer_check(
            tenant=tenant, destination_region=endpoint_region, purpose=f"connector:{kind}", request=request
        )
    except HubError as exc:
        raise ValidationFailed(str(exc), {"endpoint_region": [str(exc)]}) from None


def _validate(
    *,
    cls: type[Connector],
    name: str,
    endpoint_region: str,
    settings: Mapping[str, Any],
    credentials: Mapping[str, Any],
    current_secrets: Mapping[str, str],
    field_map: Any,
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    errors: dict[str, list[str]] = {}
    if not name.strip():
        errors["name"] = [_("This field is required.")]
    elif len(name) > 100:
        errors["name"] = [_("Use at most 100 characters.")]
    if endpoint_region not in _region_codes():
        errors["endpoint_region"] = [_("Choose one of the hub's regions.")]
    clean_settings = _clean_settings(cls, settings, errors)
    clean_secrets = _clean_secrets(cls, credentials, current_secrets, errors)
    problems = field_map_errors(cls, field_map)
    if problems:
        errors["field_map"] = problems
    if not errors:
        # The connector's own checks (e.g. Salesforce field names must be identifiers); no network here.
        try:
            own_secrets = {k: v for k, v in clean_secrets.items() if k not in HUB_SECRET_KEYS}
            cls({**clean_settings, **own_secrets, "field_map": field_map}, session=HttpSession())
        except InvalidConfig as exc:
            errors.setdefault("field_map" if "field_map" in str(exc) else "non_field_errors", []).append(
                str(exc)
            )
    if errors:
        raise ValidationFailed(_("Please correct the errors below."), errors)
    return clean_settings, clean_secrets, dict(field_map)


def _saved(connection: Connection) -> None:
    """Save inside a savepoint so a duplicate name becomes a field error and leaves the transaction usable."""
    try:
        with transaction.atomic(using=current_tenant().db_alias):
            connection.save()
    except IntegrityError:
        raise ValidationFailed(
            _("Please correct the errors below."),
            {"name": [_("A connection with this name already exists.")]},
        ) from None


# --- writes ----------------------------------------------------------------------------------------------
def connection_create(
    *,
    tenant: Any,
    kind: str,
    name: str,
    endpoint_region: str,
    settings: Mapping[str, Any] | None = None,
    credentials: Mapping[str, Any] | None = None,
    field_map: Mapping[str, Any] | None = None,
    enabled: bool = True,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Connection:
    """Create a connection after validating it against its connector's schema and the residency policy."""
    registry = connector_registry()
    if kind not in registry:
        raise ValidationFailed(
            _("Please correct the errors below."), {"kind": [_("Unknown connector kind.")]}
        )
    cls = registry[kind]
    clean_settings, secrets, clean_map = _validate(
        cls=cls,
        name=name,
        endpoint_region=endpoint_region,
        settings=settings or {},
        credentials=credentials or {},
        current_secrets={},
        field_map=field_map or {},
    )
    ref = as_ref(tenant)
    with tenant_context(ref):
        _check_residency(tenant=ref, kind=kind, endpoint_region=endpoint_region, request=request)
        connection = Connection(
            name=name.strip(),
            kind=kind,
            settings=clean_settings,
            field_map=clean_map,
            endpoint_region=endpoint_region,
            enabled=enabled,
        )
        connection.set_secrets(secrets)  # binds them to the endpoint in clean_settings
        _saved(connection)
        audit_record(
            "connection.created",
            tenant=ref,
            actor=actor,
            request=request,
            target=connection,
            changes={
                "kind": kind,
                "settings": clean_settings,
                "field_map": clean_map,
                "endpoint_region": endpoint_region,
                "enabled": enabled,
                "sensitive_fields_set": sorted(secrets),
            },
            sensitive=cls.sensitive_fields,
        )
    return connection


def connection_update(
    *,
    connection: Connection,
    tenant: Any,
    name: str | None = None,
    endpoint_region: str | None = None,
    settings: Mapping[str, Any] | None = None,
    credentials: Mapping[str, Any] | None = None,
    field_map: Mapping[str, Any] | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Connection:
    """Change a connection; None leaves a part as it is, and a blank secret keeps the stored one.

    `settings` replaces the non-secret settings as a whole (absent keys fall back to their defaults).
    A credential change is audited as its own action, naming the fields but never their values.
    """
    cls = connector_class(connection.kind)
    ref = as_ref(tenant)
    with tenant_context(ref):
        current_secrets = connection.secrets
        new_name = connection.name if name is None else name
        new_region = connection.endpoint_region if endpoint_region is None else endpoint_region
        validate = partial(
            _validate,
            cls=cls,
            name=new_name,
            endpoint_region=new_region,
            settings=connection.settings if settings is None else settings,
            credentials=credentials or {},
            field_map=connection.field_map if field_map is None else field_map,
        )
        clean_settings, secrets, clean_map = validate(current_secrets=current_secrets)
        bound = list(connection.credentials_origins or ())
        origins = endpoint_origins(connection.kind, clean_settings)
        repointed = bool(set(origins) - set(bound))
        stored = sorted(k for k in current_secrets if k not in HUB_SECRET_KEYS)
        if repointed and stored:
            # Stored secrets never follow the endpoint to a new host: the same change must enter them again.
            if not any(v not in (None, "") for v in (credentials or {}).values()):
                message = _(
                    "The endpoint address changed: enter the credentials again for the new address "
                    "(stored credentials are never sent to another host)."
                )
                audit_record(
                    "connection.repoint_refused",
                    tenant=ref,
                    actor=actor,
                    request=request,
                    target=connection,
                    changes={"entered_for": bound, "requested": origins},
                    outcome=Outcome.DENIED,
                )
                raise ValidationFailed(
                    message, {"non_field_errors": [message]} | {k: [message] for k in stored}
                )
            kept = {k: v for k, v in current_secrets.items() if k in HUB_SECRET_KEYS}
            clean_settings, secrets, clean_map = validate(current_secrets=kept)
        clean_settings.update({k: v for k, v in connection.settings.items() if k in HUB_SETTING_KEYS})
        if new_region != connection.endpoint_region:
            _check_residency(tenant=ref, kind=connection.kind, endpoint_region=new_region, request=request)
        changes = {
            attr: [getattr(connection, attr), value]
            for attr, value in (
                ("name", new_name.strip()),
                ("endpoint_region", new_region),
                ("settings", clean_settings),
                ("field_map", clean_map),
            )
            if getattr(connection, attr) != value
        }
        changed_secrets = sorted(
            k for k in set(secrets) | set(current_secrets) if secrets.get(k) != current_secrets.get(k)
        )
        if not changes and not changed_secrets:
            return connection
        for attr, (_before, after) in changes.items():
            setattr(connection, attr, after)
        if changed_secrets:
            connection.set_secrets(secrets)
        if repointed and not changed_secrets:  # no credentials to rebind (set_secrets binds new ones)
            connection.credentials_origins = origins
        # What was tested is no longer what is configured.
        connection.last_test_at, connection.last_test_ok, connection.last_test_message = None, None, ""
        _saved(connection)
        if changes:
            audit_record(
                "connection.updated",
                tenant=ref,
                actor=actor,
                request=request,
                target=connection,
                changes=changes,
                sensitive=cls.sensitive_fields,
            )
        if changed_secrets:
            audit_record(
                "connection.credentials_changed",
                tenant=ref,
                actor=actor,
                request=request,
                target=connection,
                changes={"fields": changed_secrets}
                | ({"entered_for": [bound, origins]} if origins != bound else {}),
            )
    return connection


def _plain_message(exc: ConnectorError) -> str:
    """Say what went wrong in words a person can act on; the detail is the vendor's own (redacted) text."""
    detail = exc.message
    if isinstance(exc, AuthFailed | AuthExpired):
        return _("The vendor refused the credentials: %(detail)s") % {"detail": detail}
    if isinstance(exc, RateLimited):
        return _("The vendor's rate limit was reached; try again in %(seconds)s seconds. %(detail)s") % {
            "seconds": int(exc.retry_after or 0),
            "detail": detail,
        }
    if isinstance(exc, VendorUnavailable):
        return _("The vendor could not be reached or is unavailable: %(detail)s") % {"detail": detail}
    if isinstance(exc, AddressNotAllowed | InsecureUrl):
        return _("The endpoint address is not allowed: %(detail)s") % {"detail": detail}
    if isinstance(exc, RedirectRefused):
        return _("The endpoint answered with a redirect, which the hub does not follow: %(detail)s") % {
            "detail": detail
        }
    if isinstance(exc, CredentialsNotBound):
        return detail
    if isinstance(exc, InvalidConfig):
        return _("The vendor refused the configuration: %(detail)s") % {"detail": detail}
    return _("The vendor reported an error: %(detail)s") % {"detail": detail}


def connection_test(
    *, connection: Connection, tenant: Any, actor: Any = None, request: HttpRequest | None = None
) -> TestResult:
    """Run the connector's check against the vendor, store the outcome and audit it."""
    ref = as_ref(tenant)
    warnings: list[str] = []
    with tenant_context(ref):
        secrets = list(connection.secrets.values())
        try:
            _check_residency(
                tenant=ref, kind=connection.kind, endpoint_region=connection.endpoint_region, request=request
            )
            connector = build_connector(connection)
            warnings = list(connector.warnings)
            connector.check_connection()
        except ValidationFailed as exc:
            ok, message = False, str(exc)
        except ConnectorError as exc:
            ok, message = False, _plain_message(exc)
        except Exception as exc:
            # A connector bug must not become a 500 or leak a traceback: say so, log the type only.
            logger.error("connection test of %s crashed: %s", connection.pk, type(exc).__name__)
            ok = False
            message = _("The test failed unexpectedly (%(error)s); the hub's operators have the details.") % {
                "error": type(exc).__name__
            }
        else:
            ok, message = True, _("Connected: the vendor accepted the credentials and the field map.")
        message = redact(message, secrets)[:2000]
        connection.last_test_at = timezone.now()
        connection.last_test_ok = ok
        connection.last_test_message = message
        connection.save(update_fields=["last_test_at", "last_test_ok", "last_test_message", "updated_at"])
        audit_record(
            "connection.tested",
            tenant=ref,
            actor=actor,
            request=request,
            target=connection,
            changes={"ok": ok, "message": message},
            outcome=Outcome.SUCCESS if ok else Outcome.FAILURE,
        )
    return TestResult(ok=ok, message=message, warnings=warnings)


def connection_set_enabled(
    *,
    connection: Connection,
    tenant: Any,
    enabled: bool,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Connection:
    """Switch syncing on or off; switching on re-checks residency (the policy may have tightened)."""
    ref = as_ref(tenant)
    with tenant_context(ref):
        if connection.enabled == enabled:
            return connection
        if enabled:
            _check_residency(
                tenant=ref, kind=connection.kind, endpoint_region=connection.endpoint_region, request=request
            )
        connection.enabled = enabled
        connection.save(update_fields=["enabled", "updated_at"])
        audit_record(
            "connection.enabled" if enabled else "connection.disabled",
            tenant=ref,
            actor=actor,
            request=request,
            target=connection,
        )
    return connection


def connection_delete(
    *, connection: Connection, tenant: Any, actor: Any = None, request: HttpRequest | None = None
) -> None:
    """Delete a connection and the object permissions that pointed at it."""
    from django.contrib.contenttypes.models import ContentType
    from guardian.models import UserObjectPermission

    ref = as_ref(tenant)
    with tenant_context(ref):
        audit_record(
            "connection.deleted",
            tenant=ref,
            actor=actor,
            request=request,
            target=connection,
            changes={"kind": connection.kind},
        )
        pk = str(connection.pk)
        connection.delete()
    UserObjectPermission.objects.filter(
        content_type=ContentType.objects.get_for_model(Connection), object_pk=pk
    ).delete()


def connection_grant(*, connection: Connection, tenant: Any, user: Any, actor: Any = None) -> None:
    """Let one member manage this connection without the connector-manager role."""
    object_permission_grant(user=user, perm=CONNECTION_PERM, obj=connection, tenant=tenant, actor=actor)


def connection_revoke(*, connection: Connection, tenant: Any, user: Any, actor: Any = None) -> None:
    object_permission_revoke(user=user, perm=CONNECTION_PERM, obj=connection, tenant=tenant, actor=actor)


def parse_field_map(text: str) -> dict[str, Any]:
    """Parse the console's JSON field-map text; malformed JSON is a field error, not a 500."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValidationFailed(
            _("Please correct the errors below."),
            {"field_map": [_("Not valid JSON: %(error)s") % {"error": exc}]},
        ) from None
    if not isinstance(value, dict):
        raise ValidationFailed(
            _("Please correct the errors below."),
            {"field_map": [_("The field map must be an object of streams.")]},
        )
    return value
