"""Fixtures of the encryption tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.security import crypto
from apps.security.keys import master_key_provider


@pytest.fixture(autouse=True)
def _fresh_key_caches() -> Iterator[None]:
    """Each test starts and ends with no unwrapped key or master key provider cached in this process."""
    crypto._key_cache.clear()
    master_key_provider.cache_clear()
    yield
    crypto._key_cache.clear()
    master_key_provider.cache_clear()
