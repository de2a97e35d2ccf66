"""What the help center tests share."""

from __future__ import annotations

from typing import Any

SITE = "/help/tenant-a/help"


def html(response: Any) -> str:
    return str(response.content.decode())
