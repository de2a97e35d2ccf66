"""Erasure requests to vendors: the write-only stream a data-subject erasure is delivered through.

The hub queues one outbox message per CRM connection on `ERASURE_STREAM`; each connector turns it into the
vendor's own mechanism (HubSpot GDPR delete, Salesforce record deletes, a deletion task for the vendor's
admin in ServiceNow, SAP's archiving flag on the business partners). The message's fields:

- `request`: the hub's request id (a reference for the vendor's admin, no personal data);
- `records`: `[{"stream": "contacts", "id": "<vendor id>"}]`, the subject's records the hub synced;
- `lookup_email`: only for vendors in `ERASE_BY_EMAIL`, which already hold the address and can find
  records by it that the hub never synced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ERASURE_STREAM = "erasure_requests"
#: Vendors whose erasure mechanism can find the person by e-mail address (they hold it already).
ERASE_BY_EMAIL = frozenset({"hubspot", "salesforce"})


def erasure_targets(fields: Mapping[str, Any], streams: Mapping[str, str]) -> list[tuple[str, str]]:
    """(vendor object, vendor id) of each record named in an erasure request, for the streams given
    (canonical stream -> vendor object); other streams are ignored."""
    found: list[tuple[str, str]] = []
    for item in fields.get("records") or ():
        stream, record_id = str(item.get("stream") or ""), str(item.get("id") or "")
        if stream in streams and record_id:
            found.append((streams[stream], record_id))
    return list(dict.fromkeys(found))
