"""Bearer tokens a simulator issues, each with a lifetime, so re-authentication paths can be tested by
expiring them all at once (`Simulator.expire_tokens`, `__admin/faults {"expire_tokens": true}`)."""

from __future__ import annotations

import secrets
import threading
import time


class TokenStore:
    """Bearer tokens with a lifetime; `expire_all` simulates revocation/expiry for re-auth tests."""

    def __init__(self, ttl: float = 7200) -> None:
        self.ttl = ttl
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.issued = 0

    def issue(self, prefix: str = "", *, ttl: float | None = None) -> str:
        token = prefix + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.time() + (self.ttl if ttl is None else ttl)
            self.issued += 1
        return token

    def state(self, token: str) -> str:
        """Return 'valid', 'expired' or 'unknown'."""
        expiry = self._tokens.get(token)
        if expiry is None:
            return "unknown"
        return "valid" if expiry > time.time() else "expired"

    def expire_all(self) -> None:
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)
