"""The server-error view: a dependency that is down answers 503 with Retry-After, never a 500 or a trace."""

from __future__ import annotations

import logging
import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views.decorators.csrf import requires_csrf_token

from apps.core import deadlines

logger = logging.getLogger(__name__)


def unavailable_message() -> str:
    return _("The service is temporarily unavailable. Please try again in %(seconds)d seconds.") % {
        "seconds": deadlines.retry_after()
    }


def unavailable_response(request: HttpRequest, dependency: str) -> HttpResponse:
    """503 for `request`: the API's JSON error shape under /api/ and /hooks/, a friendly page elsewhere."""
    if request.path_info.startswith(("/api/", "/hooks/")):
        response: HttpResponse = JsonResponse({"detail": unavailable_message()}, status=503)
    else:
        html = render_to_string("errors/unavailable.html", {"seconds": deadlines.retry_after()})
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(deadlines.retry_after())
    response["Cache-Control"] = "no-store"
    return response


def record_unavailable(exc: BaseException) -> tuple[str, str] | None:
    """Count `exc` by dependency when it means one is down; None when it is a plain server error."""
    from apps.observability import metrics

    found = deadlines.dependency_of(exc)
    if found is not None:
        metrics.record_dependency_error(dependency=found[0], kind=found[1])
        logger.warning(
            "answered 503: %s %s",
            found[0],
            found[1],
            extra={"error": type(exc).__name__, "where": _where(exc)},
        )
    return found


def _where(exc: BaseException) -> str:
    """The innermost frame of the hub's own code the error passed through (module:line), for the log."""
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", "")
        if name.startswith(("apps.", "hub.")) and name not in ("apps.core.deadlines", "apps.core.cache"):
            where = f"{name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


@requires_csrf_token
def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: Django calls it for any exception nothing else handled (views and middleware alike)."""
    exc = sys.exc_info()[1]
    found = record_unavailable(exc) if exc is not None else None
    if found is not None:
        return unavailable_response(request, found[0])
    if request.path_info.startswith(("/api/", "/hooks/")):
        return JsonResponse({"detail": _("Server error.")}, status=500)
    from django.views.defaults import server_error as django_server_error

    return django_server_error(request)
