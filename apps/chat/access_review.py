"""Channel API keys in the tenant's access review (accounts lists them through a source chat registers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.accounts.selectors import access_token_row
from apps.chat.models import ApiKey


def api_key_rows(*, tenant: Any, now: datetime) -> list[dict[str, Any]]:
    """Every chat API key of the tenant, with its channel and scopes (one query)."""
    keys = ApiKey.objects.filter(tenant=tenant).select_related("channel", "created_by").order_by("created_at")
    return [
        access_token_row(
            kind="chat_api_key",
            token=key,
            owner=key.created_by.get_username() if key.created_by else "",
            scope=f"{key.channel.name}: {' '.join(sorted(key.scopes))}",
            now=now,
        )
        for key in keys
    ]
