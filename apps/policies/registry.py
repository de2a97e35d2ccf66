"""Pluggable retention and erasure handlers: one function per data category, registered at start-up.

Each app that owns personal data registers its handlers in its AppConfig.ready(), so every web process and
worker builds the same registry at import time; nothing is registered at run time. Handlers run inside the
tenant's context and must work in small batches (no long transactions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

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

    @classmethod
    def of(cls, *, email: str | None, phone: str | None, external_id: str | None) -> Subject:
        return cls(
            email=email.strip().casefold() or None if email else None,
            phone=normalize_phone(phone) or None if phone else None,
            external_id=external_id.strip() or None if external_id else None,
        )

    def identifiers(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (("email", self.email), ("phone", self.phone), ("external_id", self.external_id))
            if v
        }

    def matches(self, value: str) -> bool:
        """Tell whether a stored value (an e-mail, phone number or id) names this subject."""
        text = value.strip()
        if self.email and text.casefold() == self.email:
            return True
        if self.phone and normalize_phone(text) == self.phone:
            return True
        return bool(self.external_id and text == self.external_id)


class EraseFunction(Protocol):
    def __call__(self, *, tenant: TenantRef, subject: Subject) -> int:
        """Delete (or anonymize) the tenant's data about `subject` in one category; return how many rows."""
        ...


def normalize_phone(value: str) -> str:
    """Digits only: "+49 (170) 123-4567" and "49170 1234567" compare equal."""
    return re.sub(r"\D", "", value)


_purgers: dict[str, PurgeFunction] = {}
_erasers: dict[str, EraseFunction] = {}


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
