"""Console pages for connections. Thin: check access, call a service or selector, render.

The connector-manager role (MANAGE_CONNECTIONS) manages every connection; a member without it may manage
the connections they hold a per-connection object permission on, and nothing else.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.confirm import Confirmation, confirmation_required
from apps.core.errors import HubError, NotFound
from apps.core.forms import add_service_errors
from apps.integrations.conf import connector_class, connector_registry
from apps.integrations.forms import ConnectionAccessForm, ConnectionForm, EnableForm, FieldMapForm, KindForm
from apps.integrations.models import Connection
from apps.integrations.selectors.connections import (
    connection_get,
    connection_grant_candidates,
    connection_grantees,
    connection_list,
    connection_warnings,
    manages_all,
    may_grant,
    may_list_connections,
    may_manage,
    secrets_status,
)
from apps.integrations.services.connections import (
    connection_create,
    connection_delete,
    connection_grant,
    connection_revoke,
    connection_set_enabled,
    connection_test,
    connection_update,
    parse_field_map,
)

PAGE_SIZE = 25


def _tenant_view(request: HttpRequest) -> tuple[Any, Any]:
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        raise Http404
    return tenant, request.membership  # type: ignore[attr-defined]


def _managed_connection(request: HttpRequest, pk: Any) -> Connection:
    """The connection, if the caller may manage it: 404 when it is not this tenant's, 403 when not theirs."""
    _tenant, membership = _tenant_view(request)
    try:
        connection = connection_get(pk=pk)
    except NotFound:
        raise Http404 from None
    if not may_manage(user=request.user, membership=membership, connection=connection):
        raise PermissionDenied
    return connection


def _status(form: Any) -> int:
    return 400 if form.errors else 200


@require_http_methods(["GET"])
def connection_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    _tenant, membership = _tenant_view(request)
    if not may_list_connections(user=request.user, membership=membership):
        raise PermissionDenied
    page = Paginator(connection_list(user=request.user, membership=membership), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    labels = {kind: cls.label for kind, cls in connector_registry().items()}
    context = {
        "page_obj": page,
        "rows": [(connection, labels.get(connection.kind, connection.kind)) for connection in page],
        "can_create": manages_all(user=request.user, membership=membership),
    }
    return render(request, "integrations/connection_list.html", context)


@require_http_methods(["GET", "POST"])
def connection_create_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Pick a kind (step one), then fill in the form that connector's schema defines (step two)."""
    tenant, membership = _tenant_view(request)
    if not manages_all(user=request.user, membership=membership):
        raise PermissionDenied
    registry = connector_registry()
    kind = request.GET.get("kind") or request.POST.get("kind") or ""
    if kind not in registry:
        kind_form = KindForm(request.GET or None, registry=registry)
        kind_form.is_valid()
        return render(
            request, "integrations/connection_kind.html", {"form": kind_form}, status=_status(kind_form)
        )
    connector = registry[kind]
    form = ConnectionForm(
        request.POST or None,
        connector=connector,
        initial={"endpoint_region": tenant.region_code, "name": connector.label},
    )
    if request.method == "POST" and form.is_valid():
        try:
            connection = connection_create(
                tenant=tenant,
                kind=kind,
                name=form.cleaned_data["name"],
                endpoint_region=form.cleaned_data["endpoint_region"],
                settings=form.settings_data(),
                credentials=form.credentials_data(),
                actor=request.user,
                request=request,
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request, _("Connection “%(name)s” created. Test it next.") % {"name": connection.name}
            )
            return redirect("integrations:connection-edit", tenant_slug=tenant.slug, pk=connection.pk)
    # The label, not the class: templates call callables, and a class would be instantiated.
    context = {"form": form, "kind": kind, "connector_label": connector.label}
    return render(request, "integrations/connection_form.html", context, status=_status(form))


@require_http_methods(["GET", "POST"])
def connection_edit_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    tenant, membership = _tenant_view(request)
    connection = _managed_connection(request, pk)
    connector = connector_class(connection.kind)
    form = ConnectionForm(
        request.POST or None,
        connector=connector,
        connection=connection,
        secrets_set=secrets_status(connection),
    )
    if request.method == "POST" and form.is_valid():
        try:
            connection_update(
                connection=connection,
                tenant=tenant,
                name=form.cleaned_data["name"],
                endpoint_region=form.cleaned_data["endpoint_region"],
                settings=form.settings_data(),
                credentials=form.credentials_data(),
                actor=request.user,
                request=request,
            )
        except (HubError, ValidationError) as exc:
            connection.refresh_from_db()
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Connection “%(name)s” saved.") % {"name": connection.name})
            return redirect("integrations:connection-edit", tenant_slug=tenant.slug, pk=connection.pk)
    context = {
        "form": form,
        "connection": connection,
        "connector_label": connector.label,
        "warnings": connection_warnings(connection),
        "can_delete": manages_all(user=request.user, membership=membership),
        "can_grant": may_grant(user=request.user, membership=membership),
    }
    if context["can_grant"]:
        candidates = connection_grant_candidates(tenant=tenant, connection=connection)
        context["grant_form"] = ConnectionAccessForm(users=candidates, auto_id="grant_%s")
        context["grantees"] = connection_grantees(connection=connection)
    return render(request, "integrations/connection_edit.html", context, status=_status(form))


def _access_change(request: HttpRequest, pk: Any, *, grant: bool) -> HttpResponse:
    """Grant or revoke one member's access to one connection (audited by the service); admins only.

    A revocation is confirmed first: the member is named in the query string, then posted along."""
    tenant, membership = _tenant_view(request)
    connection = _managed_connection(request, pk)
    if not may_grant(user=request.user, membership=membership):
        raise PermissionDenied
    if grant:
        users = connection_grant_candidates(tenant=tenant, connection=connection)
    else:
        granted = [user.pk for user in connection_grantees(connection=connection)]
        users = get_user_model().objects.filter(pk__in=granted)
    form = ConnectionAccessForm(request.POST if request.method == "POST" else request.GET, users=users)
    if not form.is_valid():
        messages.error(request, _("Choose a member from the list."))
    else:
        user = form.cleaned_data["user"]
        if not grant:
            page = confirmation_required(
                request,
                Confirmation(
                    title=_("Revoke access"),
                    object_name=_("%(member)s on “%(name)s”")
                    % {"member": user.get_username(), "name": connection.name},
                    consequence=_("The member can no longer open, change or sync this connection."),
                    button=_("Revoke access"),
                    cancel_url=reverse("integrations:connection-edit", args=[tenant.slug, connection.pk]),
                    fields={"user": user.pk},
                ),
            )
            if page is not None:
                return page
        change = connection_grant if grant else connection_revoke
        try:
            change(connection=connection, tenant=tenant, user=user, actor=request.user)
        except HubError as exc:
            messages.error(request, str(exc))
        else:
            text = (
                _("%(member)s may now manage “%(name)s”.")
                if grant
                else _("%(member)s may no longer manage “%(name)s”.")
            )
            messages.success(request, text % {"member": user.get_username(), "name": connection.name})
    return redirect("integrations:connection-edit", tenant_slug=tenant.slug, pk=connection.pk)


@require_POST
def connection_grant_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    return _access_change(request, pk, grant=True)


@require_http_methods(["GET", "POST"])
def connection_revoke_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    return _access_change(request, pk, grant=False)


@require_POST
def connection_test_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    """Run the connection check; htmx gets the result fragment, a plain form post a message and redirect."""
    tenant, _membership = _tenant_view(request)
    connection = _managed_connection(request, pk)
    result = connection_test(connection=connection, tenant=tenant, actor=request.user, request=request)
    if request.htmx:  # type: ignore[attr-defined]
        context = {"connection": connection, "result": result}
        return render(request, "integrations/_test_result.html", context)
    if result.ok:
        messages.success(request, result.message)
    else:
        messages.error(request, result.message)
    return redirect("integrations:connection-edit", tenant_slug=tenant.slug, pk=connection.pk)


@require_http_methods(["GET", "POST"])
def connection_enable_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    """Enable at once; disabling (no sync, no outbox delivery) is confirmed first."""
    tenant, _membership = _tenant_view(request)
    connection = _managed_connection(request, pk)
    form = EnableForm(request.POST)
    form.is_valid()
    enabled = request.method == "POST" and bool(form.cleaned_data.get("enabled"))
    if not enabled:
        page = confirmation_required(
            request,
            Confirmation(
                title=_("Disable connection"),
                object_name=connection.name,
                consequence=_(
                    "Scheduled and manual syncs stop and nothing is delivered to the vendor until you enable "
                    "it again; writes the chat captures meanwhile wait in the outbox."
                ),
                button=_("Disable connection"),
                cancel_url=reverse("integrations:connection-edit", args=[tenant.slug, connection.pk]),
            ),
        )
        if page is not None:
            return page
    try:
        connection_set_enabled(
            connection=connection, tenant=tenant, enabled=enabled, actor=request.user, request=request
        )
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        text = _("Connection “%(name)s” enabled.") if enabled else _("Connection “%(name)s” disabled.")
        messages.success(request, text % {"name": connection.name})
    return redirect("integrations:connection-edit", tenant_slug=tenant.slug, pk=connection.pk)


@require_http_methods(["GET", "POST"])
def connection_field_map_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    tenant, _membership = _tenant_view(request)
    connection = _managed_connection(request, pk)
    connector = connector_class(connection.kind)
    form = FieldMapForm(request.POST or None, initial=FieldMapForm.initial_for(connection))
    if request.method == "POST" and form.is_valid():
        try:
            field_map = parse_field_map(form.cleaned_data["field_map"])
            connection_update(
                connection=connection,
                tenant=tenant,
                field_map=field_map,
                actor=request.user,
                request=request,
            )
        except (HubError, ValidationError) as exc:
            connection.refresh_from_db()
            add_service_errors(form, exc)
        else:
            messages.success(
                request, _("Field map saved. Test the connection to check the vendor fields exist.")
            )
            return redirect("integrations:connection-edit", tenant_slug=tenant.slug, pk=connection.pk)
    context = {
        "form": form,
        "connection": connection,
        "defaults": connector.default_field_map,
    }
    return render(request, "integrations/connection_field_map.html", context, status=_status(form))


@require_http_methods(["GET", "POST"])
def connection_delete_view(request: HttpRequest, tenant_slug: str, pk: Any) -> HttpResponse:
    """Confirm, then delete; deleting needs the role (an object permission covers changes, not removal)."""
    tenant, membership = _tenant_view(request)
    connection = _managed_connection(request, pk)
    if not manages_all(user=request.user, membership=membership):
        raise PermissionDenied
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Delete connection"),
            object_name=connection.name,
            consequence=_("The connection and its stored credentials are removed. This cannot be undone."),
            button=_("Delete connection"),
            cancel_url=reverse("integrations:connection-edit", args=[tenant.slug, connection.pk]),
        ),
    )
    if page is not None:
        return page
    connection_delete(connection=connection, tenant=tenant, actor=request.user, request=request)
    messages.success(request, _("Connection “%(name)s” deleted.") % {"name": connection.name})
    return redirect("integrations:connection-list", tenant_slug=tenant.slug)
