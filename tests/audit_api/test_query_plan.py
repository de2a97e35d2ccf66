"""The cursor query on 50,000 events: served from the (tenant_id, seq) index, never a sequential scan.

Prints the plans (`pytest -s`) so a reviewer sees them; the figures are in the report, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.context import as_ref
from apps.tenants.models import Tenant
from tests.fixtures.database import SuperuserSql

URL = "/api/v1/tenants/tenant-a/audit/events/"

Append = Callable[..., list[int]]  # the `append` fixture (conftest.py)


def _page_query(client: APIClient, alias: str, params: dict[str, str]) -> str:
    with CaptureQueriesContext(connections[alias]) as captured:
        assert client.get(URL, params).status_code == 200
    selects = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].startswith("SELECT") and "audit_auditevent" in q["sql"] and "LIMIT" in q["sql"]
    ]
    return selects[0]


@pytest.mark.django_db(transaction=True)
def test_filter_and_cursor_queries_use_the_chain_index(
    olivia_api: APIClient, tenant_a: Tenant, append: Append, superuser_sql: SuperuserSql
) -> None:
    start = timezone.now() - timedelta(days=30)
    for action in ("member.updated", "connection.synced", "knowledge.published", "test.event", "chat.x"):
        append(tenant_a, 10_000, action=action, start=start, step=timedelta(seconds=1))
    alias = as_ref(tenant_a).db_alias
    superuser_sql(alias, "ANALYZE audit_auditevent")
    since = (start + timedelta(hours=1)).isoformat()
    cases: list[dict[str, Any]] = [
        {"action": "member.*", "before": "40000", "limit": "100"},
        {"order": "oldest", "after": "25000", "outcome": "success", "limit": "1000"},
        {"order": "oldest", "after": "100", "since": since, "action": "test.event", "limit": "500"},
    ]
    for params in cases:
        sql = _page_query(olivia_api, alias, params)
        assert "OFFSET" not in sql.upper(), sql
        with connections[alias].cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        print(f"\n{params}\n{plan}")  # noqa: T201 - the plan is the evidence
        assert "Seq Scan" not in plan, plan
        assert "auditevent_chain_unique" in plan, plan
        took = float(plan.rsplit("Execution Time: ", 1)[1].split(" ms")[0])
        assert took < 200, plan
