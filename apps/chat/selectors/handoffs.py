"""Reads for handoff routing and the live handoff view. Routes and business hours live in the control
database and are scoped to one tenant (another tenant's id does not exist: NotFound); handoffs live in the
region and are read inside the tenant's context. Lists cost a fixed number of queries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db.models import F, QuerySet
from django.utils import timezone

from apps.chat.models import BusinessHours, Handoff, HandoffRoute, HandoffState
from apps.core.errors import NotFound
from apps.integrations.models import Connection
from apps.tenants.models import Tenant

ACTIVE_STATES = (HandoffState.REQUESTED, HandoffState.OPEN)
R = TypeVar("R", HandoffRoute, BusinessHours)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None


def route_list(*, tenant: Tenant) -> QuerySet[HandoffRoute]:
    """The tenant's routes in the order they are tried, with their business hours."""
    return (
        HandoffRoute.objects.filter(tenant=tenant)
        .select_related("business_hours")
        .order_by("position", "name")
    )


def _tenant_row(model: type[R], *, tenant: Tenant, pk: Any, missing: str) -> R:
    """The tenant's row of `model` with id `pk`; a malformed id, none or another tenant's: NotFound."""
    key = _uuid(pk)
    row = None
    if key is not None:
        row = model.objects.filter(tenant=tenant, pk=key).select_related("tenant").first()
    if row is None:
        raise NotFound(missing)
    return row


def route_get(*, tenant: Tenant, pk: Any) -> HandoffRoute:
    return _tenant_row(HandoffRoute, tenant=tenant, pk=pk, missing="Route not found.")


def hours_list(*, tenant: Tenant) -> QuerySet[BusinessHours]:
    return BusinessHours.objects.filter(tenant=tenant).order_by("name")


def hours_get(*, tenant: Tenant, pk: Any) -> BusinessHours:
    return _tenant_row(BusinessHours, tenant=tenant, pk=pk, missing="Business hours not found.")


def connections_of_kinds(*, kinds: tuple[str, ...]) -> list[Connection]:
    """The current tenant's connections of `kinds` (ticketing ones for choices and labels), by name."""
    return list(Connection.objects.filter(kind__in=kinds).order_by("name"))


@dataclass(frozen=True, slots=True)
class HandoffRow:
    """One handed-off conversation as the live view shows it."""

    handoff: Handoff
    channel_id: Any
    channel_kind: str
    locale: str
    region: str
    waiting: timedelta | None  # since the handoff, while no agent has answered
    first_reply_after: timedelta | None  # time to the first agent reply


def handoff_list(
    *,
    state: str = "",
    connection_id: Any = None,
    channel_id: Any = None,
) -> QuerySet[Handoff]:
    """The current tenant's handoffs, newest first: the active ones unless `state` names one. Each row
    carries its conversation's channel, locale and region (one join, no query per row)."""
    qs = Handoff.objects.all()
    qs = qs.filter(state=state) if state else qs.filter(state__in=ACTIVE_STATES)
    if connection_id:
        qs = qs.filter(connection_id=connection_id)
    if channel_id:
        qs = qs.filter(conversation__channel_id=channel_id)
    return qs.annotate(
        channel_id=F("conversation__channel_id"),
        channel_kind=F("conversation__channel_kind"),
        conversation_locale=F("conversation__locale"),
        conversation_region=F("conversation__region"),
    ).order_by("-created_at", "-id")


def handoff_rows(handoffs: Any, *, now: datetime | None = None) -> list[HandoffRow]:
    """The page's handoffs with their waiting time and time to the first agent reply (no queries)."""
    now = now or timezone.now()
    rows = []
    for handoff in handoffs:
        first = handoff.first_agent_reply_at
        active = handoff.state in ACTIVE_STATES
        rows.append(
            HandoffRow(
                handoff=handoff,
                channel_id=handoff.channel_id,
                channel_kind=handoff.channel_kind,
                locale=handoff.conversation_locale,
                region=handoff.conversation_region,
                waiting=(now - handoff.created_at) if active and first is None else None,
                first_reply_after=(first - handoff.created_at) if first is not None else None,
            )
        )
    return rows
