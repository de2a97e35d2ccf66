"""Dataverse's service protection limits: per user, over a sliding 300 s window, the number of requests,
their combined execution time and how many run at once, and the documented error code of each (the store
answers a refused call with 429, that code and Retry-After). Shared by every request thread of one
simulator."""

from __future__ import annotations

import threading
import time
from collections import deque

#: Service protection error codes (learn.microsoft.com/power-apps/developer/data-platform/api-limits).
LIMIT_CODES = {
    "requests": (
        "0x80072322",
        "Number of requests exceeded the limit of {limit} over time window of 300 seconds.",
    ),
    "execution_time": (
        "0x80072321",
        "Combined execution time of incoming requests exceeded limit of {limit} milliseconds over time "
        "window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests "
        "and try again later.",
    ),
    "concurrency": ("0x80072326", "Number of concurrent requests exceeded the limit of {limit}."),
}


class ServiceProtection:
    """Dataverse's per-user limits over a sliding 300 s window (requests, execution time, concurrency)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.configure()

    def configure(self, requests: int = 6000, execution_ms: int = 1_200_000, concurrent: int = 52,
                  window: float = 300.0) -> None:  # fmt: skip
        with self.lock:
            self.limits = {"requests": requests, "execution_time": execution_ms, "concurrency": concurrent}
            self.window = window
            self.calls: deque[float] = deque()
            self.durations: deque[tuple[float, float]] = deque()  # (finished at, milliseconds)
            self.inflight = 0

    def enter(self) -> tuple[str, float] | None:
        """Count one call in; return (limit, retry after seconds) when it must be refused."""
        now = time.monotonic()
        with self.lock:
            while self.calls and self.calls[0] <= now - self.window:
                self.calls.popleft()
            while self.durations and self.durations[0][0] <= now - self.window:
                self.durations.popleft()
            if self.inflight >= self.limits["concurrency"]:
                return "concurrency", 1.0
            if len(self.calls) >= self.limits["requests"]:
                return "requests", max(1.0, self.calls[0] + self.window - now)
            if sum(ms for _, ms in self.durations) >= self.limits["execution_time"]:
                return "execution_time", max(1.0, self.durations[0][0] + self.window - now)
            self.calls.append(now)
            self.inflight += 1
            return None

    def leave(self, started: float) -> None:
        now = time.monotonic()
        with self.lock:
            self.inflight -= 1
            self.durations.append((now, (now - started) * 1000))
