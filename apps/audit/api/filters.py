"""The audit API's filters: time range, actor, action (exact or `prefix.*`), target, outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _
from django_filters.fields import IsoDateTimeField

from apps.audit.models import AuditEvent, Outcome

#: The largest value a bigint column holds: ids and sequence numbers beyond it never reach the database.
MAX_BIGINT = 2**63 - 1

ACTION_PATTERN = RegexValidator(
    r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\.\*)?$",
    _("Enter an action (member.role_changed) or an action prefix followed by .* (member.*)."),
)


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, sent to the database in UTC: PostgreSQL refuses offsets beyond ±15:59 (a 500)."""

    def to_python(self, value: Any) -> datetime | None:
        parsed: datetime | None = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:00-05:00 is past year 9999 in UTC
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class AuditEventFilter(django_filters.FilterSet):
    since = UtcIsoDateTimeFilter(
        field_name="occurred_at",
        lookup_expr="gte",
        label=_("Events at or after this time (ISO 8601; UTC when no offset is given)"),
    )
    until = UtcIsoDateTimeFilter(
        field_name="occurred_at",
        lookup_expr="lt",
        label=_("Events before this time (ISO 8601; UTC when no offset is given)"),
    )
    actor = django_filters.CharFilter(
        method="filter_actor", max_length=200, label=_("Actor: a user id or an exact user name")
    )
    action = django_filters.CharFilter(
        method="filter_action",
        max_length=64,
        validators=[ACTION_PATTERN],
        label=_("Action, exact (member.role_changed) or a prefix (member.*)"),
    )
    target_type = django_filters.CharFilter(max_length=64, label=_("Target type, exact"))
    target_id = django_filters.CharFilter(max_length=64, label=_("Target id, exact"))
    outcome = django_filters.ChoiceFilter(choices=Outcome.choices, label=_("Outcome"))

    class Meta:
        model = AuditEvent
        fields = ["since", "until", "actor", "action", "target_type", "target_id", "outcome"]

    def filter_actor(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        if value.isascii() and value.isdigit() and int(value) <= MAX_BIGINT:
            return queryset.filter(Q(actor_id=int(value)) | Q(actor_label=value))
        return queryset.filter(actor_label=value)

    def filter_action(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        if value.endswith(".*"):
            return queryset.filter(action__startswith=value[:-1])
        return queryset.filter(action=value)
