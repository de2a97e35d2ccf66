"""OpenAPI post-processing: the answers every operation can give, documented once instead of per view."""

from __future__ import annotations

from typing import Any

UNAVAILABLE = "ServiceUnavailable"
UNAVAILABLE_DESCRIPTION = (
    "A dependency (database, cache or broker) is down or too slow, or the instance is overloaded or "
    "draining. Nothing was done; retry after the number of seconds in `Retry-After`."
)
METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


def document_unavailable(result: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    """Add the 503 + `Retry-After` answer (apps/core/api.py, apps/core/admission.py) to every operation.

    Any request can meet a stalled dependency or the admission gate, so a client generator must know the
    shape: `{"detail": "..."}` and a whole number of seconds to wait.
    """
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[UNAVAILABLE] = {
        "type": "object",
        "properties": {"detail": {"type": "string", "readOnly": True}},
        "required": ["detail"],
    }
    response = {
        "description": UNAVAILABLE_DESCRIPTION,
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{UNAVAILABLE}"}}},
    }
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method in METHODS:
                # An operation that documents its own 503 (e.g. a stream cap) keeps its description and
                # gains the shared header and body.
                own = operation.setdefault("responses", {}).setdefault("503", dict(response))
                own.setdefault("headers", response["headers"])
                own.setdefault("content", response["content"])
    return result
