"""Template filters of the compliance console."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def audit_value(value: Any) -> str:
    """Show a recorded value as it was stored: text as is, anything structured as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
