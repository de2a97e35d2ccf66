"""Liveness, readiness, request ids and JSON logs."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.test import Client, override_settings

from apps.core.embedded import free_port

pytestmark = pytest.mark.django_db


def test_healthz_is_ok(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# The detailed report needs the metrics token (or a staff session); the public body is tests/observability.
DETAILS = "Bearer health-token"


@override_settings(HUB_METRICS_TOKEN="health-token")
def test_readyz_reports_every_dependency(client: Client) -> None:
    response = client.get("/readyz", HTTP_AUTHORIZATION=DETAILS)
    assert response.status_code == 200, response.content
    checks = response.json()["checks"]
    assert checks == {
        "database:default": "ok",
        "database:region_eu": "ok",
        "database:region_us": "ok",
        "redis": "ok",
    }


def test_readyz_names_the_failing_part(client: Client) -> None:
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", HUB_METRICS_TOKEN="health-token"):
        response = client.get("/readyz", HTTP_AUTHORIZATION=DETAILS)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"].startswith("unreachable")
    assert body["checks"]["database:default"] == "ok"


def test_request_id_is_echoed_or_generated(client: Client) -> None:
    given = client.get("/healthz", HTTP_X_REQUEST_ID="abc12345-trace")
    assert given["X-Request-ID"] == "abc12345-trace"
    hostile = client.get("/healthz", HTTP_X_REQUEST_ID="x\nInjected: yes")
    assert hostile["X-Request-ID"] != "x\nInjected: yes"
    assert len(hostile["X-Request-ID"]) == 32


def test_log_lines_are_json_with_request_id(client: Client) -> None:
    from django.conf import settings
    from pythonjsonlogger.json import JsonFormatter

    from apps.observability.logging import ContextFilter, request_id_var

    logging_config: dict[str, Any] = settings.LOGGING
    json_config = logging_config["formatters"]["json"]
    formatter = JsonFormatter(**{k: v for k, v in json_config.items() if k != "()"})
    record = logging.LogRecord("hub.test", logging.INFO, __file__, 1, "synced %s", ("contacts",), None)
    token = request_id_var.set("req-123456")
    try:
        ContextFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(formatter.format(record))
    assert line["message"] == "synced contacts"
    assert line["request_id"] == "req-123456"
    assert line["level"] == "INFO"
    assert line["logger"] == "hub.test"
