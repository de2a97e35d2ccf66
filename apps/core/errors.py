"""Errors shared by every app. Services raise these; views and the API turn them into responses."""


class HubError(Exception):
    """Base for errors whose message is safe to show to the user."""


class NoTenantContext(HubError):
    """A region-silo query ran with no tenant context: there is no region to send it to."""


class ValidationFailed(HubError):
    """Input was refused; `errors` maps field names to messages."""

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


class Conflict(HubError):
    """The change contradicts current state (e.g. removing the last admin)."""


class NotFound(HubError):
    """The object does not exist or is not visible to the caller (never say which)."""
