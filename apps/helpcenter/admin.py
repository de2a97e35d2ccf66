"""Operators configure custom domains in the admin; each add and removal is a service call (audited)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from apps.helpcenter.models import HelpCenterDomain
from apps.helpcenter.services import domain_add, domain_remove


@admin.register(HelpCenterDomain)
class HelpCenterDomainAdmin(admin.ModelAdmin):
    list_display = ["host", "tenant", "kb_id", "created_at"]
    search_fields = ["host", "tenant__slug"]
    fields = ["host", "tenant", "kb_id"]

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False  # remove and add again: each is one audited event

    def save_model(self, request: Any, obj: HelpCenterDomain, form: Any, change: bool) -> None:
        created = domain_add(host=obj.host, tenant=obj.tenant, kb_id=obj.kb_id, actor=request.user)
        obj.pk = created.pk

    def delete_model(self, request: Any, obj: HelpCenterDomain) -> None:
        domain_remove(domain=obj, actor=request.user)

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for domain in queryset:
            domain_remove(domain=domain, actor=request.user)
