"""Pluggable retention and erasure handlers: one function per data category, registered at start-up.

Each app that owns personal data registers its handlers in its AppConfig.ready(), so every web process and
worker builds the same registry at import time; nothing is registered at run time. Handlers run inside the
tenant's context and must work in small batches (no long transactions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured

from apps.core.context import TenantRef
from apps.policies.models import RETENTION_FIELDS


class PurgeFunction(Protocol):
    def __call__(self, *, tenant: TenantRef, cutoff: datetime, batch_size: int) -> int:
        """Delete the tenant's rows of one category older than `cutoff`; return how many."""
        ...


@dataclass(frozen=True, slots=True)
class Subject:
    """The person to erase, identified by any of these (normalized so stored values compare equal)."""

    email: str | None = None
    phone: str | None = None
    external_id: str | None = None
    #: A chat channel's user reference (e.g. a widget user id); chat finds conversations by it.
    user_ref: str | None = None

    @classmethod
    def of(
        cls,
        *,
        email: str | None,
        phone: str | None,
        external_id: str | None,
        user_ref: str | None = None,
    ) -> Subject:
        return cls(
            email=email.strip().casefold() or None if email else None,
            phone=normalize_phone(phone) or None if phone else None,
            external_id=external_id.strip() or None if external_id else None,
            user_ref=user_ref.strip() or None if user_ref else None,
        )

    def identifiers(self) -> dict[str, str]:
        pairs = (
            ("email", self.email),
            ("phone", self.phone),
            ("external_id", self.external_id),
            ("user_ref", self.user_ref),
        )
        return {k: v for k, v in pairs if v}

    def matches(self, value: str) -> bool:
        """Tell whether a stored value (an e-mail, phone number or id) names this subject."""
        text = value.strip()
        if self.email and text.casefold() == self.email:
            return True
        if self.phone and normalize_phone(text) == self.phone:
            return True
        if self.user_ref and text == self.user_ref:
            return True
        return bool(self.external_id and text == self.external_id)


class ExportFunction(Protocol):
    def __call__(self, *, tenant: TenantRef, subject: Subject, limit: int) -> list[dict[str, Any]]:
        """Return the tenant's data about `subject` in one category, as JSON-ready rows (at most `limit`)."""
        ...


@dataclass(frozen=True, slots=True)
class VendorNotice:
    """One vendor told to erase the subject: the write queued for it and its delivery state."""

    connection_id: str
    connection_name: str
    kind: str
    message_id: int | None  # None: the vendor offers no erasure mechanism; an operator handles it by hand
    state: str


class ErasureNotifier(Protocol):
    """Tells connected vendors to erase a subject (integrations implements it over its outbox)."""

    def notify(self, *, tenant: TenantRef, subject: Subject, request_id: str) -> list[VendorNotice]:
        """Queue one erasure request per vendor connection; runs before the hub's own erasure."""
        ...

    def states(self, *, tenant: TenantRef, message_ids: list[int]) -> dict[int, str]:
        """The delivery state (pending, delivered, dead, ...) of each queued request."""
        ...


class EraseFunction(Protocol):
    def __call__(self, *, tenant: TenantRef, subject: Subject) -> int:
        """Delete (or anonymize) the tenant's data about `subject` in one category; return how many rows."""
        ...


def normalize_phone(value: str) -> str:
    """Digits only: "+49 (170) 123-4567" and "49170 1234567" compare equal."""
    return re.sub(r"\D", "", value)


_purgers: dict[str, PurgeFunction] = {}
_erasers: dict[str, EraseFunction] = {}
_exporters: dict[str, ExportFunction] = {}
_notifiers: dict[str, ErasureNotifier] = {}


def register_purger(category: str, func: PurgeFunction) -> None:
    """Make the daily retention job purge `category` with `func` (one function per category)."""
    if category not in RETENTION_FIELDS:
        raise ImproperlyConfigured(f"Unknown retention category {category!r}")
    if _purgers.get(category, func) is not func:
        raise ImproperlyConfigured(f"Retention category {category!r} already has a purge function")
    _purgers[category] = func


def register_eraser(category: str, func: EraseFunction) -> None:
    """Make subject erasure cover `category` (e.g. "vault", "conversations", "synced_records", "outbox")."""
    if _erasers.get(category, func) is not func:
        raise ImproperlyConfigured(f"Erasure category {category!r} already has an erase function")
    _erasers[category] = func


def purgers() -> dict[str, PurgeFunction]:
    return dict(_purgers)


def erasers() -> dict[str, EraseFunction]:
    return dict(_erasers)


def register_exporter(category: str, func: ExportFunction) -> None:
    """Make subject access archives cover `category` (one JSON file per category in the archive)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", category):
        raise ImproperlyConfigured(f"Export category {category!r} is not a short snake_case name")
    if _exporters.get(category, func) is not func:
        raise ImproperlyConfigured(f"Export category {category!r} already has an export function")
    _exporters[category] = func


def register_erasure_notifier(name: str, notifier: ErasureNotifier) -> None:
    """Make subject erasure requests tell the vendors behind `name` (e.g. "crm") too."""
    if _notifiers.get(name, notifier) is not notifier:
        raise ImproperlyConfigured(f"Erasure notifier {name!r} is already registered")
    _notifiers[name] = notifier


def exporters() -> dict[str, ExportFunction]:
    return dict(_exporters)


def erasure_notifiers() -> dict[str, ErasureNotifier]:
    return dict(_notifiers)
