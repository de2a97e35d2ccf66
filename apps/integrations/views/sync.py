"""The sync console: per-connection status, run history, the operator's controls and webhook setup.

Everything needs OPERATE_SYNC (admins, connector managers, operators). Viewers get nothing here, not even
a read-only view: run errors quote vendor answers, and the webhook page holds endpoint URLs and secrets,
which are operational detail for the people who run the integration, not general reading.
Thin: check access, call a selector or service (each action audited), render or redirect.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.core.confirm import Confirmation, confirmation_required
from apps.core.context import current_tenant
from apps.core.errors import HubError, NotFound
from apps.core.forms import add_service_errors
from apps.integrations.models import Connection
from apps.integrations.resilience import breaker_for
from apps.integrations.selectors.connections import connection_get
from apps.integrations.selectors.sync import (
    ERROR_RATE_RUNS,
    readable_streams,
    stream_state_find,
    sync_overview,
    sync_run_get,
    sync_run_list,
)
from apps.integrations.selectors.webhooks import webhook_rejections
from apps.integrations.services import webhooks
from apps.integrations.services.sync import stream_pause, stream_resume, stream_schedule_set, sync_request
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required

PAGE_SIZE = 25
MIN_INTERVAL, MAX_INTERVAL = 60, 7 * 86_400

REJECTION_REASONS = {
    "signature": gettext_lazy("Bad or missing signature"),
    "stale": gettext_lazy("Timestamp too old"),
    "bad_timestamp": gettext_lazy("Unreadable timestamp"),
    "token": gettext_lazy("Wrong secret in the URL"),
    "org_id": gettext_lazy("Wrong organization id"),
    "no_org_id": gettext_lazy("No organization id configured"),
    "no_secret": gettext_lazy("No secret configured"),
    "malformed": gettext_lazy("Unreadable message"),
    "disabled": gettext_lazy("Connection disabled"),
    "wrong_vendor": gettext_lazy("Sent to the endpoint of another system"),
    "too_large": gettext_lazy("Body too large"),
}


class ScheduleForm(forms.Form):
    interval_seconds = forms.IntegerField(
        label=gettext_lazy("Sync every (seconds)"),
        min_value=MIN_INTERVAL,
        max_value=MAX_INTERVAL,
        help_text=gettext_lazy("At least 60 seconds, at most 7 days (604800 seconds)."),
    )


class OrgIdForm(forms.Form):
    org_id = forms.CharField(
        label=gettext_lazy("Salesforce organization id"),
        max_length=18,
        help_text=gettext_lazy(
            "Setup → Company Information → Salesforce.com Organization ID (starts with 00D)."
        ),
    )


# --- helpers -----------------------------------------------------------------------------------------------
def _connection(pk: Any) -> Connection:
    try:
        return connection_get(pk=pk)
    except NotFound:
        raise Http404 from None


def _stream(connection: Connection, stream: str) -> str:
    """The stream, if the connection's connector offers it for reading; else the page does not exist."""
    if stream not in (readable_streams(connection) or []):
        raise Http404
    return stream


def _stream_url(connection: Connection, stream: str) -> str:
    return reverse(
        "integrations:sync-stream",
        kwargs={"tenant_slug": current_tenant().slug, "pk": connection.pk, "stream": stream},
    )


def _stream_page(
    request: HttpRequest, connection: Connection, stream: str, *, form: ScheduleForm | None = None
) -> HttpResponse:
    state = stream_state_find(connection=connection, stream=stream)
    initial = {"interval_seconds": state.interval_seconds if state is not None else 900}
    form = form or ScheduleForm(initial=initial)
    page = Paginator(sync_run_list(connection=connection, stream=stream), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        "connection": connection,
        "stream": stream,
        "state": state,
        "breaker": breaker_for(connection).state(),
        "page_obj": page,
        "form": form,
    }
    return render(request, "integrations/sync_stream.html", context, status=400 if form.errors else 200)


# --- pages -------------------------------------------------------------------------------------------------
@tenant_permission_required(roles.OPERATE_SYNC)
@require_GET
def sync_overview_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    context = {"rows": sync_overview(), "error_rate_runs": ERROR_RATE_RUNS}
    return render(request, "integrations/sync_overview.html", context)


@tenant_permission_required(roles.OPERATE_SYNC)
@require_GET
def sync_stream_view(request: HttpRequest, tenant_slug: str, pk: Any, stream: str) -> HttpResponse:
    connection = _connection(pk)
    return _stream_page(request, connection, _stream(connection, stream))


@tenant_permission_required(roles.OPERATE_SYNC)
@require_GET
def sync_run_view(request: HttpRequest, tenant_slug: str, run_id: int) -> HttpResponse:
    try:
        run = sync_run_get(pk=run_id)
    except NotFound:
        raise Http404 from None
    context = {"run": run, "connection": run.connection, "attempts": list(run.attempts.order_by("number"))}
    return render(request, "integrations/sync_run.html", context)


# --- actions -----------------------------------------------------------------------------------------------
def _request_sync(request: HttpRequest, pk: Any, stream: str, *, backfill: bool) -> HttpResponse:
    connection = _connection(pk)
    stream = _stream(connection, stream)
    if not connection.enabled:
        messages.error(request, _("The connection is disabled; enable it before syncing."))
        return redirect(_stream_url(connection, stream))
    with transaction.atomic(using=current_tenant().db_alias):
        trigger = "backfill" if backfill else "manual"
        sync_request(
            connection=connection,
            stream=stream,
            trigger=trigger,
            backfill=backfill,
            actor=request.user,
            request=request,
        )
    text = _("A full resync of %(stream)s is queued.") if backfill else _("A sync of %(stream)s is queued.")
    messages.success(request, text % {"stream": stream})
    return redirect(_stream_url(connection, stream))


@tenant_permission_required(roles.OPERATE_SYNC)
@require_POST
def sync_now_view(request: HttpRequest, tenant_slug: str, pk: Any, stream: str) -> HttpResponse:
    return _request_sync(request, pk, stream, backfill=False)


@tenant_permission_required(roles.OPERATE_SYNC)
@require_POST
def sync_backfill_view(request: HttpRequest, tenant_slug: str, pk: Any, stream: str) -> HttpResponse:
    return _request_sync(request, pk, stream, backfill=True)


def _pause(request: HttpRequest, pk: Any, stream: str, *, paused: bool) -> HttpResponse:
    connection = _connection(pk)
    stream = _stream(connection, stream)
    change = stream_pause if paused else stream_resume
    change(connection=connection, stream=stream, actor=request.user, request=request)
    text = (
        _("Scheduled syncs of %(stream)s are paused.")
        if paused
        else _("Scheduled syncs of %(stream)s resumed; one is due now.")
    )
    messages.success(request, text % {"stream": stream})
    return redirect(_stream_url(connection, stream))


@tenant_permission_required(roles.OPERATE_SYNC)
@require_POST
def sync_pause_view(request: HttpRequest, tenant_slug: str, pk: Any, stream: str) -> HttpResponse:
    return _pause(request, pk, stream, paused=True)


@tenant_permission_required(roles.OPERATE_SYNC)
@require_POST
def sync_resume_view(request: HttpRequest, tenant_slug: str, pk: Any, stream: str) -> HttpResponse:
    return _pause(request, pk, stream, paused=False)


@tenant_permission_required(roles.OPERATE_SYNC)
@require_POST
def sync_schedule_view(request: HttpRequest, tenant_slug: str, pk: Any, stream: str) -> HttpResponse:
    connection = _connection(pk)
    stream = _stream(connection, stream)
    form = ScheduleForm(request.POST)
    if not form.is_valid():
        return _stream_page(request, connection, stream, form=form)
    interval = form.cleaned_data["interval_seconds"]
    stream_schedule_set(
        connection=connection, stream=stream, interval_seconds=interval, actor=request.user, request=request
    )
    messages.success(
        request,
        _("%(stream)s now syncs every %(seconds)s seconds, starting now.")
        % {"stream": stream, "seconds": interval},
    )
    return redirect(_stream_url(connection, stream))


# --- webhook setup -----------------------------------------------------------------------------------------
def _webhook_page(
    request: HttpRequest,
    connection: Connection,
    *,
    new_secret: str = "",
    org_form: OrgIdForm | None = None,
) -> HttpResponse:
    kwargs: dict[str, Any] = {"connection_id": connection.pk}
    endpoint = ""
    if connection.kind == "salesforce":
        # The token is the secret: the full URL is shown only right after a rotation.
        kwargs["token"] = new_secret or "SECRET"
        endpoint = request.build_absolute_uri(reverse("integrations:webhook-salesforce", kwargs=kwargs))
    elif connection.kind in ("hubspot", "servicenow"):
        endpoint = request.build_absolute_uri(
            reverse(f"integrations:webhook-{connection.kind}", kwargs=kwargs)
        )
    counts = webhook_rejections(connections=[connection])[connection.pk]
    stored = connection.secrets
    context = {
        "connection": connection,
        "endpoint": endpoint,
        "new_secret": new_secret,
        "secret_set": bool(stored.get("client_secret" if connection.kind == "hubspot" else "webhook_secret")),
        "org_id": connection.settings.get("webhook_org_id", ""),
        "org_form": org_form or OrgIdForm(initial={"org_id": connection.settings.get("webhook_org_id", "")}),
        "rejections": sorted(
            ((str(REJECTION_REASONS.get(reason, reason)), count) for reason, count in counts.items()),
            key=lambda item: -item[1],
        ),
        "signature_header": webhooks.HMAC_SIGNATURE,
        "timestamp_header": webhooks.HMAC_TIMESTAMP,
    }
    status = 400 if org_form is not None and org_form.errors else 200
    response = render(request, "integrations/sync_webhooks.html", context, status=status)
    if new_secret:
        response["Cache-Control"] = "no-store"
    return response


@tenant_permission_required(roles.OPERATE_SYNC)
@require_GET
def sync_webhooks_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    return _webhook_page(request, _connection(pk))


@tenant_permission_required(roles.OPERATE_SYNC)
@require_http_methods(["GET", "POST"])
def sync_webhook_rotate_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    """Confirm, rotate, show the new secret in this response only (not in a redirect, a session or a log)."""
    connection = _connection(pk)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Rotate webhook secret"),
            object_name=connection.name,
            consequence=_(
                "A new secret is generated and shown once. The old one, if any, stops working at once: "
                "deliveries are refused until the vendor is configured with the new secret."
            ),
            button=_("Rotate secret"),
            cancel_url=reverse("integrations:sync-webhooks", args=[tenant_slug, connection.pk]),
        ),
    )
    if page is not None:
        return page
    try:
        secret = webhooks.connection_webhook_secret_rotate(
            connection=connection, actor=request.user, request=request
        )
    except HubError as exc:
        messages.error(request, str(exc))
        return redirect("integrations:sync-webhooks", tenant_slug=tenant_slug, pk=connection.pk)
    messages.warning(
        request, _("Copy the new secret now: it is shown only once. The old one no longer works.")
    )
    return _webhook_page(request, connection, new_secret=secret)


@tenant_permission_required(roles.OPERATE_SYNC)
@require_http_methods(["POST"])
def sync_webhook_org_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    connection = _connection(pk)
    form = OrgIdForm(request.POST)
    if form.is_valid():
        try:
            webhooks.connection_webhook_org_set(
                connection=connection, org_id=form.cleaned_data["org_id"], actor=request.user, request=request
            )
        except HubError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Organization id saved."))
            return redirect("integrations:sync-webhooks", tenant_slug=tenant_slug, pk=connection.pk)
    return _webhook_page(request, connection, org_form=form)
