"""Roles and the permissions each grants: the one place that maps roles to permission sets.

Tenant-wide permissions follow from the member's role (no per-check queries). Object permissions on region
objects that later issues add (connections, knowledge bases, per-locale content) are django-guardian rows,
granted by those objects' services and read through `apps.tenants.selectors.permitted_ids`.
"""

from __future__ import annotations

from typing import Any

from apps.tenants.models import Membership, Role

VIEW_CONSOLE = "view_console"
MANAGE_TENANTS = "manage_tenants"  # platform operators only
MANAGE_MEMBERS = "manage_members"
MANAGE_SETTINGS = "manage_settings"
MANAGE_CONNECTIONS = "manage_connections"
OPERATE_SYNC = "operate_sync"
VIEW_AUDIT = "view_audit"
VIEW_POLICIES = "view_policies"
EDIT_KNOWLEDGE = "edit_knowledge"  # write drafts and submit them, within the member's locales/regions
REVIEW_KNOWLEDGE = "review_knowledge"  # approve (publish), reject or archive texts
MANAGE_KNOWLEDGE = "manage_knowledge"  # create and configure knowledge bases, bulk import, reindex
MANAGE_CHANNELS = "manage_channels"
VIEW_DASHBOARDS = "view_dashboards"
VIEW_TRANSCRIPTS = "view_transcripts"  # read chat conversations (personal data: every view is audited)

TENANT_PERMISSIONS = frozenset(
    {
        VIEW_CONSOLE,
        MANAGE_MEMBERS,
        MANAGE_SETTINGS,
        MANAGE_CONNECTIONS,
        OPERATE_SYNC,
        VIEW_AUDIT,
        VIEW_POLICIES,
        EDIT_KNOWLEDGE,
        REVIEW_KNOWLEDGE,
        MANAGE_KNOWLEDGE,
        MANAGE_CHANNELS,
        VIEW_DASHBOARDS,
        VIEW_TRANSCRIPTS,
    }
)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.ADMIN: TENANT_PERMISSIONS,
    Role.CONNECTOR_MANAGER: frozenset({VIEW_CONSOLE, MANAGE_CONNECTIONS, OPERATE_SYNC, VIEW_DASHBOARDS}),
    Role.COMPLIANCE_OFFICER: frozenset(
        {VIEW_CONSOLE, VIEW_AUDIT, VIEW_POLICIES, VIEW_DASHBOARDS, VIEW_TRANSCRIPTS}
    ),
    Role.LOCALIZATION_EDITOR: frozenset({VIEW_CONSOLE, EDIT_KNOWLEDGE, REVIEW_KNOWLEDGE, VIEW_DASHBOARDS}),
    Role.VIEWER: frozenset({VIEW_CONSOLE, VIEW_DASHBOARDS}),
}

# Roles whose holders must have a confirmed second factor before they see anything.
ROLES_REQUIRING_2FA = frozenset({Role.ADMIN, Role.COMPLIANCE_OFFICER})


def permissions_for(role: str) -> frozenset[str]:
    return ROLE_PERMISSIONS[Role(role)]


def can(user: Any, membership: Membership | None, perm: str) -> bool:
    """Tell whether `user` (with `membership` in the tenant at hand, if any) holds `perm` there.

    Platform operators hold every permission in every tenant; everyone else holds their role's set.
    """
    if user.is_authenticated and user.is_staff and user.is_active:
        return True
    if membership is None:
        return False
    return perm in permissions_for(membership.role)
