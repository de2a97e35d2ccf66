"""The secret segments of reset, invitation and webhook paths are blanked wherever a log line shows them."""

from __future__ import annotations

import io
import logging

import pytest

from apps.observability.redact import REDACTED, SecretPathFilter, redact_secrets

TOKEN = "eyJpIjoxLCJlIjoiZG9yYUBleGFtcGxlLmNvbSJ9:1xaASl:-e2KMVQh7Dwda1RNC4qeX"


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        (f"GET /accounts/invitations/{TOKEN}/ HTTP/1.1", "GET /accounts/invitations/[redacted]/ HTTP/1.1"),
        ("/accounts/password/reset/Mg/dj5xbg-2d26549412390/", "/accounts/password/reset/Mg/[redacted]/"),
        ("/hooks/salesforce/0b9c/sf-secret-token/", "/hooks/salesforce/0b9c/[redacted]/"),
        # In another URL: a login redirect's next= (percent-encoded), a Referer with host and query.
        (
            "/accounts/login/?next=%2Faccounts%2Finvitations%2F" + TOKEN.replace(":", "%3A") + "%2F",
            "/accounts/login/?next=%2Faccounts%2Finvitations%2F[redacted]%2F",
        ),
        (
            f"https://hub.example.com/accounts/invitations/{TOKEN}",
            "https://hub.example.com/accounts/invitations/[redacted]",
        ),
        (
            f"<WSGIRequest: GET '/accounts/invitations/{TOKEN}/'>",
            "<WSGIRequest: GET '/accounts/invitations/[redacted]/'>",
        ),
        # Pages without a secret stay as they are.
        ("/accounts/password/reset/sent/", "/accounts/password/reset/sent/"),
        ("GET /accounts/password/reset/done/ HTTP/1.1", "GET /accounts/password/reset/done/ HTTP/1.1"),
        ("/hooks/hubspot/0b9c/", "/hooks/hubspot/0b9c/"),
    ],
)
def test_secret_segments_are_blanked(line: str, kept: str) -> None:
    assert redact_secrets(line) == kept


def test_the_gunicorn_filter_renders_arguments_and_tracebacks_blanked() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.redaction")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    secret_filter = SecretPathFilter()
    logger.addFilter(secret_filter)
    logger.propagate = False
    try:
        logger.warning("%(r)s %(s)s", {"r": f"GET /accounts/invitations/{TOKEN}/ HTTP/1.1", "s": "200"})
        try:
            raise ValueError(f"bad path /accounts/invitations/{TOKEN}/")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(secret_filter)
    output = stream.getvalue()
    assert TOKEN not in output
    assert output.startswith(f"GET /accounts/invitations/{REDACTED}/ HTTP/1.1 200\n")
    assert f"ValueError: bad path /accounts/invitations/{REDACTED}/" in output
