"""Sync throughput: end-to-end incremental sync of Salesforce contacts into the store, next to a baseline.

The Salesforce simulator runs in its own process (as the vendor would) with 100,000 contacts. Measured:
(a) simple-salesforce alone paging the same SOQL the connector sends (fetch-only baseline, records/s);
(b) the first incremental sync through `sync_stream` (connector, hashing, bulk upsert, cursor per batch);
(c) an incremental run with nothing changed (must finish in under a second);
(d) a backfill with nothing changed (reads everything, writes nothing thanks to the content hash).

Runs against the dev services (HUB_HOME) in a throwaway tenant `bench-sync-<random>`; its connection (and
with it the synced rows) is deleted at the end and the tenant deactivated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

CONTACTS = int(os.environ.get("BENCH_SYNC_CONTACTS", "100000"))
ROOT = Path(__file__).resolve().parents[1]
SMALL = {"accounts": 10, "tickets": 10, "orders": 10, "articles": 10, "leads": 0}


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings.dev")
    import django

    django.setup()


def serve(state_dir: str, contacts: int) -> None:
    """Child process body: run the Salesforce simulator until stdin closes; print its description."""
    from connectors.salesforce.simulator import SalesforceSimulator

    sim = SalesforceSimulator(state_dir=state_dir, counts={**SMALL, "contacts": contacts}).start()
    sys.stdout.write(json.dumps(sim.describe()) + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    sim.stop()


def _start_simulator(state_dir: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_sync", "serve", state_dir, str(CONTACTS)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the Salesforce simulator did not start")
    return proc, json.loads(line)


def _fetch_only(described: dict[str, Any], soql: str, page_size: int) -> tuple[int, float]:
    """Page the SOQL with simple-salesforce on a plain requests session; return (records, seconds)."""
    import requests
    from simple_salesforce import Salesforce

    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override the session-level trust
    session.verify = described["ca_bundle"]
    token = session.post(
        described["login_url"] + "/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": described["client_id"],
            "client_secret": described["client_secret"],
        },
        timeout=30,
    ).json()
    sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=session)
    headers = {"Sforce-Query-Options": f"batchSize={page_size}"}
    started = time.perf_counter()
    page = sf.query(soql, include_deleted=True, headers=headers)
    count = len(page["records"])
    while not page["done"]:
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True, headers=headers)
        count += len(page["records"])
    return count, time.perf_counter() - started


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def run() -> dict[str, Any]:
    _setup_django()
    from django.conf import settings
    from django.db import connections

    from apps.core.context import tenant_context
    from apps.integrations.conf import build_connector
    from apps.integrations.demo import demo_config
    from apps.integrations.models import SyncedRecord
    from apps.integrations.services.connections import connection_create, connection_delete
    from apps.integrations.services.sync import sync_stream
    from apps.tenants.services import region_sync, tenant_create, tenant_update
    from connectors.salesforce.connector import SalesforceConnector

    regions = {region.code: region for region in region_sync()}
    region = regions.get("eu") or next(iter(regions.values()))
    with connections[region.db_alias].cursor() as cursor:
        cursor.execute("SELECT to_regclass('integrations_syncedrecord')")
        if cursor.fetchone()[0] is None:
            raise RuntimeError("the region database is not migrated: run `manage.py migrate` first")
    state_dir = tempfile.mkdtemp(prefix="bench-sync-")
    proc, described = _start_simulator(state_dir)
    settings.HUB_CONNECTOR_CA_BUNDLE = described["ca_bundle"]
    slug = f"bench-sync-{uuid.uuid4().hex[:8]}"
    tenant = tenant_create(slug=slug, name="Benchmark (sync)", home_region=region)
    try:
        config, credentials = demo_config("salesforce", described)
        connection = connection_create(
            tenant=tenant,
            kind="salesforce",
            name="bench",
            endpoint_region=region.code,
            settings=config,
            credentials=credentials,
        )
        with tenant_context(tenant):
            connector = build_connector(connection)
            assert isinstance(connector, SalesforceConnector)
            fields = ", ".join(connector._select("contacts"))  # the exact SOQL the connector sends
            soql = f"SELECT {fields} FROM Contact ORDER BY SystemModstamp, Id"  # noqa: S608 - constants
            page_size = int(connector.config["page_size"])
            fetched, fetch_s = _fetch_only(described, soql, page_size)

            def timed(**kwargs: Any) -> tuple[Any, float]:
                started = time.perf_counter()
                result = sync_stream(connection_id=connection.pk, stream="contacts", **kwargs)
                return result, time.perf_counter() - started

            first, first_s = timed(trigger="manual")
            again, again_s = timed(trigger="schedule")
            backfill, backfill_s = timed(trigger="backfill", backfill=True)
            stored = SyncedRecord.objects.filter(connection=connection, stream="contacts").count()
        sync_rate = _rate(first.created + first.updated, first_s)
        fetch_rate = _rate(fetched, fetch_s)
        result = {
            "contacts": CONTACTS,
            "page_size": page_size,
            "fetch_only": {"records": fetched, "seconds": round(fetch_s, 3), "records_per_s": fetch_rate},
            "incremental_first_load": {
                "records": first.read,
                "created": first.created,
                "seconds": round(first_s, 3),
                "records_per_s": sync_rate,
                "status": first.status,
            },
            "ratio_sync_to_fetch_only": round(sync_rate / fetch_rate, 3) if fetch_rate else None,
            "incremental_nothing_changed": {
                "read": again.read,
                "written": again.created + again.updated,
                "seconds": round(again_s, 3),
                "status": again.status,
            },
            "backfill_nothing_changed": {
                "read": backfill.read,
                "written": backfill.created + backfill.updated,
                "unchanged": backfill.unchanged,
                "seconds": round(backfill_s, 3),
                "vs_first_load": round(backfill_s / first_s, 3) if first_s else None,
                "status": backfill.status,
            },
            "stored": stored,
            "targets": {
                "records_per_s_min": 10_000,
                "ratio_min": 0.5,
                "met": sync_rate >= 10_000 and fetch_rate > 0 and sync_rate / fetch_rate >= 0.5,
                "nothing_changed_under_1s": again_s < 1.0,
                "backfill_writes_nothing": backfill.created + backfill.updated == 0,
            },
        }
        connection_delete(connection=connection, tenant=tenant)
    finally:
        tenant_update(tenant=tenant, is_active=False)
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    return {"tenant": slug, "region": region.code, **result}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
