"""The console's navigation: every area, the permission that shows it, and where it lives."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from apps.tenants import roles


@dataclass(frozen=True)
class Area:
    key: str
    label: str | Promise
    url_name: str
    perm: str


AREAS = (
    Area("overview", _("Overview"), "console:tenant-home", roles.VIEW_CONSOLE),
    Area("members", _("Tenants & members"), "tenants:members", roles.VIEW_CONSOLE),
    Area("connectors", _("Connectors"), "integrations:connection-list", roles.MANAGE_CONNECTIONS),
    Area("sync", _("Sync"), "integrations:sync-overview", roles.OPERATE_SYNC),
    Area("knowledge", _("Knowledge"), "knowledge:kb-list", roles.EDIT_KNOWLEDGE),
    Area("audit", _("Audit"), "audit:event-list", roles.VIEW_AUDIT),
    Area("policies", _("Policies"), "policies:detail", roles.VIEW_POLICIES),
    Area("sso", _("Single sign-on"), "sso-config:overview", roles.MANAGE_SETTINGS),
    Area("channels", _("Channels & API keys"), "chat:channel-list", roles.MANAGE_CHANNELS),
    Area("conversations", _("Conversations"), "chat:conversation-list", roles.VIEW_TRANSCRIPTS),
    Area("routing", _("Handoff routing"), "chat:route-list", roles.MANAGE_CHANNELS),
    Area("handoffs", _("Handoffs"), "chat:handoff-list", roles.MANAGE_CHANNELS),
    Area("dashboards", _("Dashboards"), "console:dashboard", roles.VIEW_DASHBOARDS),
    Area("scim", _("SCIM provisioning"), "accounts:scim", roles.MANAGE_MEMBERS),
    Area("siem", _("SIEM streaming"), "siem:destination-list", roles.VIEW_AUDIT),  # issue 22
)
