"""django-filter sets for the tenant list pages."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from apps.tenants.models import Membership, Region, Role, Tenant


class MembershipFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(label=_("Search"), method="search")
    role = django_filters.ChoiceFilter(label=_("Role"), choices=Role.choices, empty_label=_("Any role"))

    class Meta:
        model = Membership
        fields = ["q", "role"]

    def search(self, queryset: QuerySet[Membership], name: str, value: str) -> QuerySet[Membership]:
        return queryset.filter(
            Q(user__username__icontains=value)
            | Q(user__email__icontains=value)
            | Q(user__first_name__icontains=value)
            | Q(user__last_name__icontains=value)
        )


class TenantFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(label=_("Search"), method="search")
    home_region = django_filters.ModelChoiceFilter(
        label=_("Region"),
        queryset=Region.objects.all(),
        empty_label=_("Any region"),
    )

    class Meta:
        model = Tenant
        fields = ["q", "home_region", "is_active"]

    def search(self, queryset: QuerySet[Tenant], name: str, value: str) -> QuerySet[Tenant]:
        return queryset.filter(Q(name__icontains=value) | Q(slug__icontains=value))
