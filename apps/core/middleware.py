"""Request middleware of the core app: the statement budget of the request's kind of work."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase

from apps.core import deadlines


class DeadlineMiddleware:
    """Run each request with its kind's statement budget (chat, management API, console page).

    Early in the chain, so the session and user lookups of the request get the same budget; a streamed body
    (an export) is produced after the view returns, so its statements get the budget too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        name = deadlines.request_class(request.path_info)
        with deadlines.statement_class(name):
            response = self.get_response(request)
        if isinstance(response, StreamingHttpResponse) and isinstance(response.streaming_content, Iterator):
            response.streaming_content = _within(name, response.streaming_content)  # not an async stream
        return response


def _within(name: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    with deadlines.statement_class(name):
        yield from chunks
