"""Secrets that travel in URL paths, blanked in every log line that may carry a path.

Links e-mailed to people carry their secret in the path (`/accounts/password/reset/<uid>/<token>/`,
`/accounts/invitations/<token>/`), and so does the Salesforce outbound-message URL
(`/hooks/salesforce/<connection>/<token>/`: Salesforce cannot sign its messages); the OpenID Connect callback
carries a single-use code and the state of a pending sign-in in its query. Moving them out of the
path would break links already sent and Salesforce's configuration, so the logs blank them instead, in one
place used by gunicorn's access and error logs (hub/gunicorn.py) and by the application's JSON log formatter.
The same paths inside another URL (`?next=%2Faccounts%2Finvitations%2F...`, a Referer) are blanked too.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_SLASH = r"(?:/|%2[Ff])"
# One path segment: up to the next slash (literal or encoded) or the end of the URL.
_SEGMENT = r"(?:(?!%2[Ff])[^/\s?#&\"'<>\\])+"

SECRET_PATHS = (
    # Django's password reset confirmation: /accounts/password/reset/<uidb64>/<token>/
    re.compile(rf"({_SLASH}accounts{_SLASH}password{_SLASH}reset{_SLASH}{_SEGMENT}{_SLASH}){_SEGMENT}"),
    # A signed invitation: /accounts/invitations/<token>/
    re.compile(rf"({_SLASH}accounts{_SLASH}invitations{_SLASH}){_SEGMENT}"),
    # Salesforce outbound messages: /hooks/salesforce/<connection id>/<token>/
    re.compile(rf"({_SLASH}hooks{_SLASH}salesforce{_SLASH}{_SEGMENT}{_SLASH}){_SEGMENT}"),
    # The OpenID Connect callback's query: the authorization code and the state of a pending sign-in.
    re.compile(
        rf"({_SLASH}accounts{_SLASH}sso{_SLASH}oidc{_SLASH}callback{_SLASH}?(?:\?|%3[Ff]))[^\s\"'<>#]+"
    ),
)


def redact_secrets(text: str) -> str:
    """Return `text` with the secret segment of every known secret-carrying path replaced."""
    if "accounts" not in text and "hooks" not in text:  # the common case costs one scan
        return text
    for pattern in SECRET_PATHS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return text


class SecretPathFilter(logging.Filter):
    """Render a record's message (and traceback) with secret path segments blanked.

    For loggers whose formatter is not ours (gunicorn's): the message is rendered once here, so the
    arguments (gunicorn's access-log atoms, a request line) cannot bring a secret back.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact_secrets(message), None
        if record.exc_info:
            record.exc_text = redact_secrets(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
