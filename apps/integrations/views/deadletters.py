"""The dead-letter console: list (filters, pages), detail with the error history, replay and discard.

Needs OPERATE_SYNC, like the rest of the sync console: letters quote vendor errors and hold payloads.
Thin: check access, call a selector or service (replay and discard are audited there), render or redirect.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.core.confirm import Confirmation, confirmation_required
from apps.core.errors import HubError
from apps.integrations.models import Connection, DeadLetter, DeadLetterKind, DeadLetterStatus
from apps.integrations.selectors.deadletters import deadletter_get, deadletter_list
from apps.integrations.services.deadletters import deadletter_discard, deadletter_replay
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required

PAGE_SIZE = 25


class DeadLetterFilterForm(forms.Form):
    kind = forms.ChoiceField(
        label=gettext_lazy("Kind"),
        required=False,
        choices=[("", gettext_lazy("All kinds")), *DeadLetterKind.choices],
    )
    connection = forms.ChoiceField(label=gettext_lazy("Connection"), required=False)
    status = forms.ChoiceField(
        label=gettext_lazy("Status"),
        required=False,
        choices=[("", gettext_lazy("Any status")), *DeadLetterStatus.choices],
    )
    created_from = forms.DateField(
        label=gettext_lazy("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        label=gettext_lazy("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        connections = Connection.objects.order_by("name").values_list("pk", "name")
        field = cast(forms.ChoiceField, self.fields["connection"])
        field.choices = [
            ("", _("All connections")),
            *((str(pk), name) for pk, name in connections),
        ]


def _letter(pk: int) -> DeadLetter:
    letter = deadletter_get(pk=pk)
    if letter is None:
        raise Http404
    return letter


@tenant_permission_required(roles.OPERATE_SYNC)
@require_GET
def deadletter_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    form = DeadLetterFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    letters = deadletter_list(
        kind=filters.get("kind", ""),
        connection_id=filters.get("connection") or None,
        status=filters.get("status", ""),
        created_from=filters.get("created_from"),
        created_to=filters.get("created_to"),
    )
    page = Paginator(letters, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"form": form, "page_obj": page, "filtered": bool(request.GET.dict().keys() - {"page"})}
    return render(request, "integrations/deadletter_list.html", context, status=400 if form.errors else 200)


@tenant_permission_required(roles.OPERATE_SYNC)
@require_GET
def deadletter_detail_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    letter = _letter(pk)
    return render(
        request,
        "integrations/deadletter_detail.html",
        {"letter": letter, "message": letter.message, "is_open": letter.status == DeadLetterStatus.OPEN},
    )


@tenant_permission_required(roles.OPERATE_SYNC)
@require_POST
def deadletter_replay_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    letter = _letter(pk)
    try:
        deadletter_replay(dead_letter=letter, actor=request.user, request=request)
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Replayed: the work is queued again."))
    return redirect("integrations:deadletter-detail", tenant_slug=tenant_slug, pk=letter.pk)


@tenant_permission_required(roles.OPERATE_SYNC)
@require_http_methods(["GET", "POST"])
def deadletter_discard_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    letter = _letter(pk)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Discard dead letter"),
            object_name=_("Dead letter #%(pk)s (%(kind)s, %(stream)s)")
            % {"pk": letter.pk, "kind": letter.get_kind_display(), "stream": letter.stream},
            consequence=_(
                "The failed work is given up: it is never retried or delivered, and a replay is no longer "
                "possible. The letter stays in the list, marked discarded."
            ),
            button=_("Discard"),
            cancel_url=reverse("integrations:deadletter-detail", args=[tenant_slug, letter.pk]),
        ),
    )
    if page is not None:
        return page
    try:
        deadletter_discard(dead_letter=letter, actor=request.user, request=request)
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Discarded: this work will not be retried."))
    return redirect("integrations:deadletter-detail", tenant_slug=tenant_slug, pk=letter.pk)
