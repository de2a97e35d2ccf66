"""Single sign-on enforcement as the tenant layer sees it: which session may enter which tenant.

`apps.accounts` signs users in through a tenant's identity provider and records it in the session under
`SSO_SESSION_KEY` ({"tenant": id, "provider": id, "mfa": bool}); the tenant middleware and the management
API's session authentication ask `sso_blocks` before letting a member in.
"""

from __future__ import annotations

from typing import Any

from apps.tenants.models import Membership, Tenant

SSO_SESSION_KEY = "hub_sso"


def sso_session_tenant(session: Any) -> int | None:
    """The tenant whose identity provider signed this session in, if any."""
    value = session.get(SSO_SESSION_KEY) if session is not None else None
    return value.get("tenant") if isinstance(value, dict) else None


def sso_blocks(*, user: Any, session: Any, tenant: Tenant, membership: Membership | None) -> bool:
    """Tell whether a member must sign in through `tenant`'s identity provider before entering it.

    Only tenants that enforce SSO; never platform operators (they are not members) nor the break-glass admin
    (who signs in with a password and TOTP). A session signed in by another tenant's IdP does not count.
    """
    if not tenant.sso_enforced or membership is None or user.is_staff:
        return False
    if membership.is_break_glass:
        return False
    return sso_session_tenant(session) != tenant.pk
