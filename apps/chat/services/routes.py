"""Writes of handoff routes and business hours (control database): validated field by field, checked
against the actor's role (`manage_channels`, admins) and audited. The routing itself: services/routing.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.chat.models import BusinessHours, ChannelKind, HandoffRoute
from apps.chat.services import intents
from apps.chat.services.actions import TICKET_KINDS
from apps.chat.services.business_hours import clean_holidays, clean_timezone, clean_weekly
from apps.chat.services.channels import require_channel_manager
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.integrations.models import Connection
from apps.tenants.models import Tenant, locale_validator

ROUTE_FIELDS = (
    "name",
    "position",
    "enabled",
    "regions",
    "locales",
    "intents",
    "channel_kinds",
    "connection_id",
    "queue",
    "fallback_connection_id",
    "fallback_queue",
    "business_hours_id",
)
HOURS_FIELDS = ("name", "timezone", "weekly", "holidays")
#: Intents a route may name: everything the intent router can answer with.
ROUTE_INTENTS = (*intents.CLASSIFIER_INTENTS, intents.UNKNOWN)
MAX_POSITION = 10_000


def _name(data: Mapping[str, Any], errors: dict[str, list[str]]) -> str:
    name = str(data.get("name") or "").strip()
    if not name:
        errors["name"] = [_("This field is required.")]
    elif len(name) > 100:
        errors["name"] = [_("Use at most 100 characters.")]
    return name


def _strings(field: str, value: Any, errors: dict[str, list[str]]) -> list[str] | None:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        errors[field] = [_("Give a list of values.")]
        return None
    return list(dict.fromkeys(v.strip() for v in value if v.strip()))  # order kept, no repeats


def _unknown(field: str, values: list[str], allowed: Any, errors: dict[str, list[str]]) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        errors[field] = [
            _("Unknown values: %(values)s. Use %(allowed)s.")
            % {"values": ", ".join(unknown[:10]), "allowed": ", ".join(allowed)}
        ]


def _locales(tenant: Tenant, values: list[str], errors: dict[str, list[str]]) -> None:
    for value in values:
        try:
            locale_validator(value)
        except ValidationError as exc:
            errors["locales"] = [f"{value[:20]}: {exc.messages[0]}"]
            return
    enabled = list(tenant.enabled_locales or [])
    if not enabled:
        return
    # Conversations may carry any variant of an enabled language (knowledge falls back to the language).
    languages = {locale.split("-", 1)[0] for locale in enabled}
    unknown = [v for v in values if v.split("-", 1)[0] not in languages]
    if unknown:
        errors["locales"] = [
            _("Not a language of this tenant: %(values)s. Use %(allowed)s or their variants.")
            % {"values": ", ".join(unknown), "allowed": ", ".join(enabled)}
        ]


def _ticket_connection(field: str, pk: Any, errors: dict[str, list[str]]) -> Any:
    """The id of the tenant's ticketing connection `pk` (inside its tenant context), else a field error."""
    try:
        connection = Connection.objects.filter(pk=pk).first()
    except (ValidationError, ValueError):
        connection = None
    if connection is None:
        errors[field] = [_("No such connection in this tenant.")]
        return None
    if connection.kind not in TICKET_KINDS:
        errors[field] = [
            _("The connection “%(name)s” cannot receive tickets (use %(kinds)s).")
            % {"name": connection.name, "kinds": ", ".join(TICKET_KINDS)}
        ]
        return None
    return connection.pk


def _validate_route(*, tenant: Tenant, data: Mapping[str, Any]) -> dict[str, Any]:
    """Check and normalize a whole route (ROUTE_FIELDS); raise ValidationFailed with field errors."""
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {"name": _name(data, errors)}
    position = data.get("position", 0)
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= MAX_POSITION:
        errors["position"] = [_("Use a whole number from 0 to %(max)s.") % {"max": MAX_POSITION}]
    clean["position"] = position
    clean["enabled"] = bool(data.get("enabled", True))
    allowed = {
        "regions": list(settings.HUB_REGIONS),
        "intents": list(ROUTE_INTENTS),
        "channel_kinds": list(ChannelKind.values),
    }
    for field in ("regions", "locales", "intents", "channel_kinds"):
        values = _strings(field, data.get(field), errors)
        clean[field] = values or []
        if values and field in allowed:
            _unknown(field, values, allowed[field], errors)
        elif values:
            _locales(tenant, values, errors)
    for field in ("queue", "fallback_queue"):
        clean[field] = str(data.get(field) or "").strip()
        if len(clean[field]) > 255:
            errors[field] = [_("Use at most 255 characters.")]
    with tenant_context(tenant):
        if not data.get("connection_id"):
            errors["connection_id"] = [_("This field is required.")]
            clean["connection_id"] = None
        else:
            clean["connection_id"] = _ticket_connection("connection_id", data["connection_id"], errors)
        clean["fallback_connection_id"] = None
        if data.get("fallback_connection_id"):
            fallback = _ticket_connection("fallback_connection_id", data["fallback_connection_id"], errors)
            if fallback is not None and fallback == clean["connection_id"]:
                errors["fallback_connection_id"] = [_("The fallback must be another connection.")]
            clean["fallback_connection_id"] = fallback
    if clean["fallback_queue"] and not data.get("fallback_connection_id"):
        errors["fallback_queue"] = [_("A fallback queue needs a fallback connection.")]
    clean["business_hours_id"] = None
    if data.get("business_hours_id"):
        try:
            hours = BusinessHours.objects.filter(tenant=tenant, pk=data["business_hours_id"]).first()
        except (ValidationError, ValueError):
            hours = None
        if hours is None:
            errors["business_hours_id"] = [_("No such business hours in this tenant.")]
        else:
            clean["business_hours_id"] = hours.pk
    if errors:
        raise ValidationFailed(_("Please correct the errors below."), errors)
    return clean


def _save(obj: HandoffRoute | BusinessHours, what: str, **kwargs: Any) -> None:
    """Save in a savepoint so a duplicate name becomes a field error and the transaction stays usable."""
    try:
        with transaction.atomic():
            obj.save(**kwargs)
    except IntegrityError:
        raise ValidationFailed(_("Please correct the errors below."), {"name": [what]}) from None


def _audit_values(obj: Any, fields: Any) -> dict[str, Any]:
    return {f: str(v) if (v := getattr(obj, f)) is not None and f.endswith("_id") else v for f in fields}


def _known(changes: Mapping[str, Any], fields: tuple[str, ...], service: str) -> None:
    unknown = set(changes) - set(fields)
    if unknown:
        raise ValueError(f"{service}: unknown fields {sorted(unknown)}")


def _created(
    obj: HandoffRoute | BusinessHours,
    *,
    event: str,
    duplicate: str,
    fields: tuple[str, ...],
    actor: Any,
    request: HttpRequest | None,
) -> None:
    """Save a new route or business hours (a duplicate name is a field error) and audit its values."""
    _save(obj, duplicate)
    audit_record(
        event, tenant=obj.tenant, actor=actor, request=request, target=obj, changes=_audit_values(obj, fields)
    )


def _changed(
    obj: HandoffRoute | BusinessHours,
    clean: Mapping[str, Any],
    *,
    event: str,
    duplicate: str,
    actor: Any,
    request: HttpRequest | None,
) -> None:
    """Save the checked values that differ and audit them before/after; nothing differs: no write."""
    changed = [f for f, v in clean.items() if getattr(obj, f) != v]
    if not changed:
        return
    before = _audit_values(obj, changed)
    for field in changed:
        setattr(obj, field, clean[field])
    _save(obj, duplicate, update_fields=[*changed, "updated_at"])
    audit_record(
        event,
        tenant=obj.tenant,
        actor=actor,
        request=request,
        target=obj,
        changes={"before": before, "after": _audit_values(obj, changed)},
    )


def route_values(route: HandoffRoute) -> dict[str, Any]:
    """A route's fields as a change starts from (a PATCH changes some of them)."""
    return {f: getattr(route, f) for f in ROUTE_FIELDS}


def route_create(
    *, tenant: Tenant, data: Mapping[str, Any], actor: Any = None, request: HttpRequest | None = None
) -> HandoffRoute:
    """Create a routing rule of `tenant`; without a position it goes last."""
    require_channel_manager(tenant=tenant, actor=actor)
    data = dict(data)
    if data.get("position") is None:
        last = HandoffRoute.objects.filter(tenant=tenant).order_by("-position").first()
        data["position"] = min(last.position + 1, MAX_POSITION) if last else 0
    clean = _validate_route(tenant=tenant, data=data)
    route = HandoffRoute(tenant=tenant, **clean)
    _created(
        route,
        event="handoff_route.created",
        duplicate=_("A route with this name already exists."),
        fields=ROUTE_FIELDS,
        actor=actor,
        request=request,
    )
    return route


def route_update(
    *,
    route: HandoffRoute,
    changes: Mapping[str, Any],
    actor: Any = None,
    request: HttpRequest | None = None,
) -> HandoffRoute:
    """Change the named fields of a route (the whole route is checked again)."""
    _known(changes, ROUTE_FIELDS, "route_update")
    tenant = route.tenant
    require_channel_manager(tenant=tenant, actor=actor)
    clean = _validate_route(tenant=tenant, data={**route_values(route), **changes})
    _changed(
        route,
        clean,
        event="handoff_route.updated",
        duplicate=_("A route with this name already exists."),
        actor=actor,
        request=request,
    )
    return route


def route_delete(*, route: HandoffRoute, actor: Any = None, request: HttpRequest | None = None) -> None:
    tenant = route.tenant
    require_channel_manager(tenant=tenant, actor=actor)
    audit_record(
        "handoff_route.deleted",
        tenant=tenant,
        actor=actor,
        request=request,
        target=route,
        changes=_audit_values(route, ROUTE_FIELDS),
    )
    route.delete()


def route_move(
    *, route: HandoffRoute, offset: int, actor: Any = None, request: HttpRequest | None = None
) -> HandoffRoute:
    """Move a route `offset` places up (negative) or down; positions are renumbered 0, 1, 2… on the way."""
    tenant = route.tenant
    require_channel_manager(tenant=tenant, actor=actor)
    with transaction.atomic():
        routes = list(
            HandoffRoute.objects.select_for_update().filter(tenant=tenant).order_by("position", "name")
        )
        index = next(i for i, r in enumerate(routes) if r.pk == route.pk)
        target = max(0, min(len(routes) - 1, index + offset))
        if target == index:
            return route
        routes.insert(target, routes.pop(index))
        for position, item in enumerate(routes):
            if item.position != position:
                HandoffRoute.objects.filter(pk=item.pk).update(position=position)
        before = route.position
        route.position = target
        audit_record(
            "handoff_route.moved",
            tenant=tenant,
            actor=actor,
            request=request,
            target=route,
            changes={"before": before, "after": target},
        )
    return route


# --- business hours -----------------------------------------------------------------------------------
def _validate_hours(data: Mapping[str, Any]) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    clean = {
        "name": _name(data, errors),
        "timezone": clean_timezone(data.get("timezone"), errors),
        "weekly": clean_weekly(data.get("weekly"), errors),
        "holidays": clean_holidays(data.get("holidays") or [], errors),
    }
    if errors:
        raise ValidationFailed(_("Please correct the errors below."), errors)
    return clean


def hours_create(
    *, tenant: Tenant, data: Mapping[str, Any], actor: Any = None, request: HttpRequest | None = None
) -> BusinessHours:
    """Create business hours (one zone, weekly intervals, holidays) for routes of `tenant` to use."""
    require_channel_manager(tenant=tenant, actor=actor)
    hours = BusinessHours(tenant=tenant, **_validate_hours(data))
    _created(
        hours,
        event="business_hours.created",
        duplicate=_("Business hours with this name already exist."),
        fields=HOURS_FIELDS,
        actor=actor,
        request=request,
    )
    return hours


def hours_update(
    *,
    hours: BusinessHours,
    changes: Mapping[str, Any],
    actor: Any = None,
    request: HttpRequest | None = None,
) -> BusinessHours:
    _known(changes, HOURS_FIELDS, "hours_update")
    require_channel_manager(tenant=hours.tenant, actor=actor)
    clean = _validate_hours({**{f: getattr(hours, f) for f in HOURS_FIELDS}, **changes})
    _changed(
        hours,
        clean,
        event="business_hours.updated",
        duplicate=_("Business hours with this name already exist."),
        actor=actor,
        request=request,
    )
    return hours


def hours_delete(*, hours: BusinessHours, actor: Any = None, request: HttpRequest | None = None) -> None:
    """Delete business hours; the routes that used them answer at any hour from then on."""
    tenant = hours.tenant
    require_channel_manager(tenant=tenant, actor=actor)
    routes = list(hours.routes.values_list("name", flat=True))
    audit_record(
        "business_hours.deleted",
        tenant=tenant,
        actor=actor,
        request=request,
        target=hours,
        changes={**_audit_values(hours, HOURS_FIELDS), "routes": routes},
    )
    hours.delete()
