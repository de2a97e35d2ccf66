"""One confirmation step for every destructive console action (revoke, rotate, discard, disable, delete).

The action's URL answers GET with a confirmation page (what is affected, what follows, one POST button) and
acts only on a POST that carries the page's confirmation field; a POST without it gets the same page with 400
and changes nothing. Plain HTML forms, no JavaScript (the CSP allows none inline). Usage in a view, after the
object is loaded and access checked (so other tenants still get 404 and the unauthorised 403):

    page = confirmation_required(request, Confirmation(title=..., object_name=..., consequence=..., ...))
    if page is not None:
        return page
    ...act...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import Promise

#: The field (and value) the confirmation page posts; an action without it does nothing.
CONFIRM_FIELD = "confirm"
CONFIRM_VALUE = "yes"
#: The confirmation as POST data, for scripted clients and tests: `client.post(url, {**CONFIRMED, ...})`.
CONFIRMED: Mapping[str, str] = MappingProxyType({CONFIRM_FIELD: CONFIRM_VALUE})


@dataclass(frozen=True)
class Confirmation:
    """What a destructive action says before it runs."""

    title: str | Promise  # the page heading: "Revoke API key"
    object_name: str  # what it is done to: "ci (hub_ab12…)"
    consequence: str | Promise  # what follows, plainly: "Clients using it are refused from now on."
    button: str | Promise  # the POST button: "Revoke key"
    cancel_url: str  # where "Cancel" leads (the object's page)
    fields: Mapping[str, Any] = field(default_factory=dict)  # the action's own inputs, posted along


def confirmed(request: HttpRequest) -> bool:
    """Tell whether `request` is a POST from the confirmation page."""
    return request.method == "POST" and request.POST.get(CONFIRM_FIELD) == CONFIRM_VALUE


def confirmation_required(request: HttpRequest, confirmation: Confirmation) -> HttpResponse | None:
    """Return None for a confirmed POST (act now); else the confirmation page: 200 for a GET, 400 for a POST
    that lacks the confirmation (nothing was changed)."""
    if confirmed(request):
        return None
    unconfirmed = request.method == "POST"
    context = {
        "confirmation": confirmation,
        "confirm_field": CONFIRM_FIELD,
        "confirm_value": CONFIRM_VALUE,
        "unconfirmed": unconfirmed,
    }
    return render(request, "console/confirm.html", context, status=400 if unconfirmed else 200)
