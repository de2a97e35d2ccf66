"""Liveness and readiness endpoints for load balancers and orchestrators, and the Prometheus endpoint."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.observability.access import check_scraper, client_address
from apps.observability.health import readiness_cached


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Say the process is alive; checks nothing else so a slow database never restarts the pod."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Say whether this process can serve traffic (200 or 503), from a result cached for a few seconds.

    Anyone may ask, so the body names no database alias, host or error: which check failed goes to the log,
    and into the body only for staff users and holders of the metrics token (HUB_METRICS_TOKEN).
    """
    checks = readiness_cached()
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, object] = {"status": "ok" if ready else "unavailable"}
    if _may_see_details(request):
        body["checks"] = checks
    return JsonResponse(body, status=200 if ready else 503)


def _may_see_details(request: HttpRequest) -> bool:
    token: str = settings.HUB_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Serve every process's metrics and the scrape-time gauges to an allowed scraper (see access.py)."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    from apps.observability.collectors import scrape_registry

    verdict = check_scraper(
        authorization=request.headers.get("Authorization", ""), address=client_address(request.META)
    )
    if verdict == "unauthorized":
        response = HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if verdict == "forbidden":
        return HttpResponse("This address may not read metrics.\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
