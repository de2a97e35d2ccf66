"""Helpers of the web widget tests (API, push, browser): a channel's widget key and the widget's headers."""

from __future__ import annotations

import secrets
from typing import Any

from django.test import Client

from apps.chat.models import Channel

SITE = "https://shop.example"
JSON = "application/json"


def widget_enable(channel: Channel, *, origins: list[str] | None = None) -> str:
    """Give `channel` a widget key and allowed origins (the console slice does this for real); the key."""
    channel.widget_key = "wk_" + secrets.token_urlsafe(18)
    channel.allowed_origins = origins if origins is not None else [SITE]
    channel.save(update_fields=["widget_key", "allowed_origins"])
    return channel.widget_key


def headers(key: str, *, origin: str = SITE, token: str = "", **extra: Any) -> dict[str, Any]:
    """Test-client keyword arguments of a widget request from `origin`."""
    result: dict[str, Any] = {"HTTP_ORIGIN": origin, "HTTP_X_WIDGET_KEY": key, **extra}
    if token:
        result["HTTP_X_WIDGET_TOKEN"] = token
    return result


def start(client: Client, channel: Channel, key: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/widget/v1/{channel.pk}/conversations", body, content_type=JSON, **headers(key))
    assert response.status_code == 201, response.content
    return dict(response.json())


def say(client: Client, channel: Channel, key: str, started: dict[str, Any], text: str, **extra: Any) -> Any:
    return client.post(
        f"/widget/v1/{channel.pk}/conversations/{started['conversation_id']}/messages",
        {"text": text},
        content_type=JSON,
        **headers(key, token=started["token"], **extra),
    )
