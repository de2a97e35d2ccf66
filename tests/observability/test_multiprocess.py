"""Multi-process mode: samples written by separate processes all show in one scrape."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.fixtures.metrics import scrape, value

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import os, sys, django
django.setup()
from apps.observability import metrics
for _ in range(int(sys.argv[1])):
    metrics.record_rate_limit_hit("tenant")
metrics.observe_vendor_request(connector="hubspot", status=200, seconds=0.2)
print(os.getpid())
"""


def _write_in_subprocess(times: int) -> int:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hub.settings.test",
        "HUB_TEST_RUN": settings.TEST_RUN,
        "HUB_HOME": str(settings.HUB_HOME),
    }
    result = subprocess.run(
        [sys.executable, "-c", WRITER, str(times)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(result.stdout.strip().splitlines()[-1])


def test_two_processes_write_and_one_scrape_sees_both() -> None:
    before = scrape()
    first, second = _write_in_subprocess(2), _write_in_subprocess(3)
    assert first != second != os.getpid()
    files = {p.name for p in Path(settings.HUB_METRICS_DIR).glob("*.db")}
    assert f"counter_{first}.db" in files and f"counter_{second}.db" in files
    after = scrape()
    hits = "hub_rate_limit_hits_total"
    assert value(after, hits, scope="tenant") == value(before, hits, scope="tenant") + 5
    count = "hub_vendor_request_duration_seconds_count"
    assert value(after, count, connector="hubspot", status="2xx") == (
        value(before, count, connector="hubspot", status="2xx") + 2
    )
    # The processes have exited: their counters stay in the totals (Prometheus counters never go down).
    assert value(scrape(), hits, scope="tenant") == value(after, hits, scope="tenant")


def test_the_gunicorn_hook_forgets_an_exited_workers_live_gauges() -> None:
    from apps.observability.gunicorn import child_exit

    directory = Path(settings.HUB_METRICS_DIR)
    live = directory / "gauge_livesum_999999.db"
    counter = directory / "counter_999999.db"
    live.write_bytes(b"")
    counter.write_bytes(b"")
    try:

        class _Worker:
            pid = 999999

        child_exit(None, _Worker())
        assert not live.exists()
        assert counter.exists()
    finally:
        counter.unlink(missing_ok=True)
        live.unlink(missing_ok=True)
