"""Retention and erasure tests: a tiny Salesforce simulator (the outbox tests deliver a few leads)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tests.fixtures.simulators import TINY


@pytest.fixture
def sf_counts() -> Mapping[str, int]:
    return TINY
