"""Query-parameter parsing shared by every API: the management API's paging and the chat API's cursors.

Outside apps/core/api.py, which only hub may import (the `api-packages` contract), so apps' own API
packages can use it too.
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request


def bounded_int(request: Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """Read a whole-number query parameter within [minimum, maximum], or refuse it with a 400 naming it.

    Only plain ASCII digits: no sign, no fraction or exponent, no other scripts' digits (int() would take
    "١٢" and " 12 "), and the length is checked before converting, so a 10,000-digit value costs nothing.
    A value the database cannot hold never reaches it.
    """
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(maximum))) or not (
        minimum <= int(raw) <= maximum
    ):
        message = _("Enter a whole number from %(minimum)d to %(maximum)d.") % {
            "minimum": minimum,
            "maximum": maximum,
        }
        raise ValidationError({name: [message]})
    return int(raw)
