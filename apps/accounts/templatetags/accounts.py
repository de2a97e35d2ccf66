"""Template helpers for account state shown on other apps' pages (e.g. the member page's unlock button)."""

from __future__ import annotations

from typing import Any

from django import template

from apps.accounts import selectors

register = template.Library()


@register.simple_tag
def login_locked(user: Any) -> bool:
    """Tell whether `user`'s account is locked out after failed sign-ins."""
    return selectors.user_is_locked(user=user)
