"""OpenAPI post-processing: the answers every operation can give, documented once instead of per view."""

from __future__ import annotations

from typing import Any

UNAVAILABLE = "ServiceUnavailable"
UNAVAILABLE_DESCRIPTION = (
    "A dependency (database, cache or broker) is down or too slow, or the instance is overloaded or "
    "draining. Nothing was done; retry after the number of seconds in `Retry-After`."
)
RATE_LIMITED = "RateLimited"
RATE_LIMITED_DESCRIPTION = (
    "A rate limit was reached: the token's (or, signed in, the user's) or the tenant's. Nothing was done; "
    "retry after the number of seconds in `Retry-After`."
)
#: The management API: every operation under it is rate limited per caller and tenant.
MANAGEMENT_PATH_PREFIX = "/api/v1/tenants/"
METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


def document_unavailable(result: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    """Add the 503 + `Retry-After` answer (apps/core/api.py, apps/core/admission.py) to every operation.

    Any request can meet a stalled dependency or the admission gate, so a client generator must know the
    shape: `{"detail": "..."}` and a whole number of seconds to wait.
    """
    return _document_retry_after(
        result, status="503", schema=UNAVAILABLE, description=UNAVAILABLE_DESCRIPTION
    )


def document_rate_limited(result: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    """Add the 429 + `Retry-After` answer to every management API operation (apps/tenants/ratelimit.py).

    An operation that documents its own 429 (the audit verify's stricter limit) keeps its description.
    """
    return _document_retry_after(
        result,
        status="429",
        schema=RATE_LIMITED,
        description=RATE_LIMITED_DESCRIPTION,
        path_prefix=MANAGEMENT_PATH_PREFIX,
    )


def _document_retry_after(
    result: dict[str, Any], *, status: str, schema: str, description: str, path_prefix: str = ""
) -> dict[str, Any]:
    """Document an answer of `{"detail": "..."}` and a `Retry-After` header on the operations under a path."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[schema] = {
        "type": "object",
        "properties": {"detail": {"type": "string", "readOnly": True}},
        "required": ["detail"],
    }
    response = {
        "description": description,
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    for path, operations in result.get("paths", {}).items():
        if not path.startswith(path_prefix):
            continue
        for method, operation in operations.items():
            if method in METHODS:
                # An operation that documents its own answer (e.g. a stream cap's 503) keeps its description
                # and gains the shared header and body.
                own = operation.setdefault("responses", {}).setdefault(status, dict(response))
                own.setdefault("headers", response["headers"])
                own.setdefault("content", response["content"])
    return result
