"""Reads of dead letters for the console: the filtered list and one letter."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.integrations.models import DeadLetter


def deadletter_list(
    *,
    kind: str = "",
    connection_id: Any = None,
    status: str = "",
    created_from: Any = None,
    created_to: Any = None,
) -> QuerySet[DeadLetter]:
    """The tenant's dead letters, newest first, narrowed by the console's filters (dates inclusive)."""
    letters = DeadLetter.objects.select_related("connection").order_by("-created_at", "-id")
    if kind:
        letters = letters.filter(kind=kind)
    if connection_id:
        letters = letters.filter(connection_id=connection_id)
    if status:
        letters = letters.filter(status=status)
    if created_from:
        letters = letters.filter(created_at__date__gte=created_from)
    if created_to:
        letters = letters.filter(created_at__date__lte=created_to)
    return letters


def deadletter_get(*, pk: int) -> DeadLetter | None:
    """One of the tenant's dead letters, or None (another tenant's id reads as missing)."""
    return DeadLetter.objects.select_related("connection", "message").filter(pk=pk).first()
