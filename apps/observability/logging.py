"""Structured-logging context: the request id and tenant on every log line.

Contextvars (not thread-locals) so the values follow a request through threads, asyncio and Celery tasks.
"""

from __future__ import annotations

import contextvars
import logging

from pythonjsonlogger.json import JsonFormatter

from apps.core.context import current_tenant_or_none
from apps.observability.redact import redact_secrets

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("hub_request_id", default=None)
tenant_slug_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("hub_log_tenant", default=None)


class ContextFilter(logging.Filter):
    """Attach request_id and tenant to each record so the JSON formatter emits them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        tenant = current_tenant_or_none()  # the tenant a task or request works for, when it has one
        record.tenant = tenant.slug if tenant is not None else tenant_slug_var.get()
        return True


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines with the secret segments of known URL paths blanked (see apps/observability/redact.py).

    Applied to the rendered line, so every field is covered: the message, `extra` values such as a logged
    path, the repr of a request Django's own loggers attach, and tracebacks.
    """

    def format(self, record: logging.LogRecord) -> str:
        return redact_secrets(super().format(record))
