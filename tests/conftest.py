"""The suite's hooks and its one plugin of shared fixtures (tests/fixtures/, described there).

Tests run on the real embedded PostgreSQL and Redis that `make test` starts.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.fixtures.cache import run_keys_delete

pytest_plugins = [
    "tests.fixtures.tenants",
    "tests.fixtures.auth",
    "tests.fixtures.simulators",
    "tests.fixtures.integrations",
    "tests.fixtures.chat",
    "tests.fixtures.database",
    "tests.fixtures.oidc",
    "tests.fixtures.outage",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Let every database test use every silo (pytest-django otherwise allows only `default`)."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is not None and "databases" not in marker.kwargs:
            item.add_marker(
                pytest.mark.django_db(*marker.args, **marker.kwargs, databases="__all__"), append=False
            )


@pytest.fixture(scope="session", autouse=True)
def _metrics_dir() -> Iterator[None]:
    """Start each run with an empty metrics directory (hub/settings/test.py) and remove it afterwards."""
    path = Path(settings.HUB_METRICS_DIR)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    yield
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """Drop this run's Redis keys after each test (a module whose processes share state across its tests,
    tests/chaos/test_multiprocess.py, overrides this and drops them when the module ends)."""
    yield
    run_keys_delete()
