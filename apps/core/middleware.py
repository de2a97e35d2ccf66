"""Request middleware of the core app: the statement budget of the request's kind of work."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.core import deadlines


class DeadlineMiddleware:
    """Run each request with its kind's statement budget (chat, management API, console page).

    Early in the chain, so the session and user lookups of the request get the same budget.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with deadlines.statement_class(deadlines.request_class(request.path_info)):
            return self.get_response(request)
