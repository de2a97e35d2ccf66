"""The SCIM error envelope (RFC 7644 §3.12): every refusal of /scim/v2/ answers in it, never HTML or a 500."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(Exception):
    """A refusal with its HTTP status and, for 400s, the RFC's `scimType` (invalidFilter, invalidValue…)."""

    def __init__(self, status: int, detail: str, scim_type: str = "", *, retry_after: int = 0) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def invalid_filter(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


def invalid_syntax(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidSyntax")


def invalid_path(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidPath")


def not_found() -> ScimError:
    return ScimError(404, "Resource not found.")


def uniqueness(detail: str) -> ScimError:
    return ScimError(409, detail, "uniqueness")
