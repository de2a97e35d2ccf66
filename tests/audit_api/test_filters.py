"""Each filter of the event list, and bad values: a 400 naming the parameter, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.audit.services import audit_record
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db

URL = "/api/v1/tenants/tenant-a/audit/events/"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

Append = Callable[..., list[int]]  # the `append` fixture (conftest.py)


def _seqs(client: APIClient, **params: str) -> list[int]:
    response = client.get(URL, {"order": "oldest", "limit": "1000", **params})
    assert response.status_code == 200, response.content
    return [event["seq"] for event in response.json()["results"]]


def test_time_range(olivia_api: APIClient, tenant_a: Tenant, append: Append) -> None:
    seqs = append(tenant_a, 10, start=T0, step=timedelta(hours=1))
    assert _seqs(olivia_api, since="2026-03-01T15:00:00Z", until="2026-03-01T18:00:00Z") == seqs[3:6]
    assert _seqs(olivia_api, since="2026-03-01T16:00:00+01:00", until="2026-03-01T17:00:00") == seqs[3:5]
    assert _seqs(olivia_api, until="2026-03-02") == seqs  # a date is midnight UTC; earlier events too
    assert _seqs(olivia_api, since="2026-03-01T21:00:00.000001Z", until="2026-03-02") == []
    # An offset PostgreSQL refuses (beyond ±15:59) is still a time: compared in UTC, not a 500.
    assert _seqs(olivia_api, since="2026-03-01T19:26:00+16:26", until="2026-03-02") == seqs  # 03:00 UTC
    assert _seqs(olivia_api, since="2026-03-01", until="2026-02-28T20:00:00-16:26") == seqs[:1]  # 12:26 UTC


def test_actor_by_id_or_name(olivia_api: APIClient, tenant_a: Tenant, alice: Any, bob: Any) -> None:
    mine = audit_record("test.by_alice", tenant=tenant_a, actor=alice).seq
    other = audit_record("test.by_bob", tenant=tenant_a, actor=bob).seq
    by_id = _seqs(olivia_api, actor=str(alice.pk))
    assert mine in by_id and other not in by_id
    assert set(by_id) == set(_seqs(olivia_api, actor="alice"))
    assert other in _seqs(olivia_api, actor="bob")
    assert _seqs(olivia_api, actor="ALICE") == []  # exact
    assert _seqs(olivia_api, actor="9" * 30) == []  # beyond a bigint: only a name, never a database error


def test_action_exact_and_prefix(olivia_api: APIClient, tenant_a: Tenant, append: Append) -> None:
    roles = append(tenant_a, 2, action="member.role_changed")
    added = append(tenant_a, 1, action="member.added")
    other = append(tenant_a, 1, action="membership.x")
    assert _seqs(olivia_api, action="member.role_changed") == roles
    member = _seqs(olivia_api, action="member.*")
    assert set(roles + added) <= set(member) and not set(other) & set(member)
    assert _seqs(olivia_api, action="member") == []  # exact: no such action


def test_target_and_outcome(olivia_api: APIClient, tenant_a: Tenant, append: Append) -> None:
    append(tenant_a, 3, target_type="connection")
    denied = append(tenant_a, 2, target_type="connection", target_id="c-7", outcome="denied")
    assert len(_seqs(olivia_api, target_type="connection")) == 5
    assert _seqs(olivia_api, target_type="connection", target_id="c-7") == denied
    assert _seqs(olivia_api, outcome="denied") == denied
    failed = _seqs(olivia_api, outcome="failure")
    assert not set(denied) & set(failed)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("after", "abc"),
        ("after", "-1"),
        ("after", "1.5"),
        ("after", "9" * 40),
        ("before", "0"),
        ("before", "x"),
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "ten"),
        ("since", "yesterday"),
        ("since", "2026-13-01"),
        ("until", "2026-02-30T10:00:00Z"),
        ("until", "9999-12-31T23:00:00-05:00"),  # past year 9999 in UTC
        ("outcome", "maybe"),
        ("order", "sideways"),
        ("action", "member.*.x"),
        ("action", "*"),
        ("action", "a" * 65),
        ("target_id", "x" * 65),
        ("actor", "x" * 201),
    ],
)
def test_bad_values_are_a_400_naming_the_parameter(
    olivia_api: APIClient, tenant_a: Tenant, name: str, value: str
) -> None:
    response = olivia_api.get(URL, {name: value})
    assert response.status_code == 400, (name, value, response.status_code)
    body = response.json()
    assert list(body) == [name] and body[name][0], body


def test_a_bad_value_records_no_read(olivia_api: APIClient, tenant_a: Tenant) -> None:
    olivia_api.get(URL, {"outcome": "maybe"})
    response = olivia_api.get(URL, {"action": "audit.read"})
    assert response.json()["results"] == []
