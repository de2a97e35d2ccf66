"""Injected misbehaviour, shared by all request threads of one simulator: latency, error statuses at a
rate, rate-limit storms, outages, slow (dripped) bodies and malformed answers. A seeded RNG keeps the
dice reproducible; `Simulator.inject` and `POST __admin/faults` configure it."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: How an injected "malformed" fault corrupts a successful answer (status and headers stay as they were):
#: truncated  - the body cut in half mid-document (a dropped connection behind a proxy);
#: garbage    - an HTML proxy error page, echoing the request (credentials included), under the vendor's
#:              JSON/XML content type;
#: missing    - syntactically valid, but the element/key holding the data is absent (a changed contract);
#: wrong_type - syntactically valid, but that element/key holds a scalar instead of rows.
MALFORMED_KINDS = ("truncated", "garbage", "missing", "wrong_type")


@dataclass(slots=True)
class ErrorRule:
    status: int
    rate: float = 1.0
    remaining: int | None = None  # None: until cleared


class Faults:
    """Injected misbehaviour, shared by all request threads of one simulator."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)  # noqa: S311 - reproducible fault dice, not security
        self.clear()

    def clear(self) -> None:
        self.latency = 0.0
        self.errors: list[ErrorRule] = []
        self.rate_limit_remaining: int | None = 0  # None: storm until cleared
        self.rate_limit_retry_after = 30
        self.rate_limit_policy = ""  # vendor-specific flavour, e.g. HubSpot "DAILY"
        self.outage: str | None = None  # "503" or "reset"
        self.drip: tuple[int, float] | None = None  # (chunk bytes, seconds between chunks)
        self.malformed: str | None = None  # one of MALFORMED_KINDS: corrupt successful answers
        self.malformed_remaining: int | None = None  # None: until cleared

    def configure(self, spec: Mapping[str, Any]) -> None:
        """Apply an admin spec: latency_ms, errors[{status, rate, count}], rate_limit{count, retry_after},
        outage ("503"/"reset"/None), drip{chunk, delay_ms}, malformed{kind, count}, clear."""
        with self._lock:
            if spec.get("clear"):
                self.clear()
            if "latency_ms" in spec:
                self.latency = float(spec["latency_ms"]) / 1000
            for rule in spec.get("errors", ()):
                rate = float(rule.get("rate", 1.0))
                self.errors.append(ErrorRule(int(rule["status"]), rate, rule.get("count")))
            if "rate_limit" in spec:
                storm = spec["rate_limit"] or {}
                self.rate_limit_remaining = storm.get("count") if storm else 0
                self.rate_limit_retry_after = int(storm.get("retry_after", 30)) if storm else 30
                self.rate_limit_policy = str(storm.get("policy", "")) if storm else ""
            if "outage" in spec:
                self.outage = spec["outage"] or None
            if "malformed" in spec:
                bad = spec["malformed"] or {}
                kind = bad.get("kind") if bad else None
                if kind is not None and kind not in MALFORMED_KINDS:
                    raise ValueError(f"unknown malformed kind {kind!r}; expected one of {MALFORMED_KINDS}")
                self.malformed, self.malformed_remaining = kind, bad.get("count") if bad else None
            if "drip" in spec:
                drip = spec["drip"]
                self.drip = None
                if drip:
                    self.drip = (int(drip.get("chunk", 256)), float(drip.get("delay_ms", 50)) / 1000)

    def take_error(self) -> int | None:
        with self._lock:
            for rule in self.errors:
                if rule.remaining is not None and rule.remaining <= 0:
                    continue
                if self._rng.random() < rule.rate:
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.status
            return None

    def take_malformed(self) -> str | None:
        with self._lock:
            if self.malformed is None:
                return None
            if self.malformed_remaining is not None:
                if self.malformed_remaining <= 0:
                    return None
                self.malformed_remaining -= 1
            return self.malformed

    def take_rate_limit(self) -> bool:
        with self._lock:
            if self.rate_limit_remaining is None:
                return True
            if self.rate_limit_remaining > 0:
                self.rate_limit_remaining -= 1
                return True
            return False
