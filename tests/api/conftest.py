"""The management API tests: alice (admin of A), bob (viewer of A), charlie (here: admin of B) and their
token (`*_api`) and session (`*_session`) clients, from tests/fixtures/."""

from __future__ import annotations

import pytest

from apps.tenants.models import Role


@pytest.fixture
def charlie_role() -> Role:
    """Admin of tenant B: even an admin elsewhere sees nothing of A."""
    return Role.ADMIN
