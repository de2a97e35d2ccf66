"""Typed connector errors: the sync engine decides retry vs. dead-letter from the type, never from text."""

from __future__ import annotations


class ConnectorError(Exception):
    """A vendor call failed; `permanent` errors must not be retried (fix config or data first)."""

    default_permanent = True

    def __init__(
        self,
        message: str,
        permanent: bool | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = self.default_permanent if permanent is None else permanent
        self.status = status
        self.code = code

    def __str__(self) -> str:
        return self.message


class AuthFailed(ConnectorError):
    """Credentials were rejected at login: retrying with the same credentials cannot help."""


class AuthExpired(ConnectorError):
    """The session or token expired even after one re-authentication; a later attempt may succeed."""

    default_permanent = False


class RateLimited(ConnectorError):
    """The vendor refused the call for quota reasons; retry no earlier than `retry_after` seconds."""

    default_permanent = False

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        scope: str = "default",
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, False, status=status, code=code)
        self.retry_after = retry_after
        self.scope = scope


class VendorUnavailable(ConnectorError):
    """The vendor is down, slow or answered 5xx: transient, retry with backoff and feed the breaker."""

    default_permanent = False


class UnexpectedResponse(ConnectorError):
    """The vendor answered in well-formed JSON/XML, but not in the documented shape (a changed API version,
    a WSDL that does not match the system): retrying cannot help until the connector or system changes."""


class InvalidConfig(ConnectorError):
    """The connection's settings are malformed or refer to something that does not exist."""


class UnknownConnectorKind(InvalidConfig):
    """No connector class is registered for the requested kind."""


class AddressNotAllowed(InvalidConfig):
    """The configured host resolves to a private or loopback address that is not allow-listed."""


class InsecureUrl(InvalidConfig):
    """The URL is not https where https is required (or not http(s) at all): secrets would travel in clear."""


class RedirectRefused(InvalidConfig):
    """The endpoint answered with a redirect; the hub does not follow redirects (enter the final address)."""


class CredentialsNotBound(InvalidConfig):
    """The stored credentials were entered for another endpoint address: they must be entered again."""
