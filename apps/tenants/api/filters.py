"""django-filter sets of the management API (the member filter is shared with the console)."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from apps.tenants.filters import MembershipFilter
from apps.tenants.models import Invitation, Tenant

__all__ = ["InvitationFilter", "MembershipFilter", "TenantFilter"]


class TenantFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(label=_("Search name or slug"), method="search")
    home_region = django_filters.CharFilter(field_name="home_region__code", label=_("Region code"))
    is_active = django_filters.BooleanFilter()

    class Meta:
        model = Tenant
        fields = ["q", "home_region", "is_active"]

    def search(self, queryset: QuerySet[Tenant], name: str, value: str) -> QuerySet[Tenant]:
        return queryset.filter(Q(name__icontains=value) | Q(slug__icontains=value))


class InvitationFilter(django_filters.FilterSet):
    STATUSES = [
        ("open", pgettext_lazy("status", "Open")),
        ("accepted", _("Accepted")),
        ("revoked", _("Revoked")),
        ("expired", _("Expired")),
    ]

    status = django_filters.ChoiceFilter(choices=STATUSES, method="filter_status")
    email = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Invitation
        fields = ["status", "email"]

    def filter_status(self, queryset: QuerySet[Invitation], name: str, value: str) -> QuerySet[Invitation]:
        now = timezone.now()
        pending = queryset.filter(accepted_at=None, revoked_at=None)
        if value == "accepted":
            return queryset.exclude(accepted_at=None)
        if value == "revoked":
            return queryset.filter(accepted_at=None).exclude(revoked_at=None)
        if value == "expired":
            return pending.filter(expires_at__lte=now)
        return pending.filter(expires_at__gt=now)
