"""Console test fixtures (helpers the modules share live in tests/console/helpers.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


@pytest.fixture
def bob_client(bob: Any) -> Client:
    """The viewer of tenant A, signed in without a second factor (the console's read pages allow it)."""
    client = Client()
    client.force_login(bob)
    return client
