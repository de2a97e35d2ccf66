"""Observability tests: a small Salesforce simulator per test (fifty contacts: enough to count, quick)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest


@pytest.fixture
def sf_counts() -> Mapping[str, int]:
    return {"contacts": 50, "accounts": 5, "tickets": 5, "orders": 5, "articles": 5, "leads": 0}
