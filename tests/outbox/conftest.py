"""Outbox tests: a tiny Salesforce simulator per test (they write leads and read little)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tests.fixtures.simulators import TINY


@pytest.fixture
def sf_counts() -> Mapping[str, int]:
    return TINY
