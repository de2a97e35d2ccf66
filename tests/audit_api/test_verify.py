"""POST .../audit/verify/: the whole chain or a range, tampering found, the check itself recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.audit import signing
from apps.audit.chain import anchor_message
from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.tenants.models import Tenant
from tests.fixtures.database import SuperuserSql

URL = "/api/v1/tenants/tenant-a/audit/verify/"

Append = Callable[..., list[int]]  # the `append` fixture (conftest.py)


def _last_event(tenant: Tenant) -> AuditEvent:
    with tenant_context(tenant):
        event = AuditEvent.objects.order_by("-seq").first()
    assert event is not None
    return event


@pytest.mark.django_db
def test_whole_chain_ok_anchored_and_recorded(
    olivia_api: APIClient, tenant_a: Tenant, append: Append
) -> None:
    seqs = append(tenant_a, 40)
    head = _last_event(tenant_a)
    response = olivia_api.post(URL, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True and body["broken_seq"] is None and body["reason"] == "" and body["kind"] == ""
    assert body["checked"] == seqs[-1] and body["head"] == {"seq": head.seq, "hash": head.hash}
    anchor = body["anchor"]
    assert (anchor["tenant_id"], anchor["seq"], anchor["hash"]) == (tenant_a.id, head.seq, head.hash)
    # The anchor's signature verifies offline over the fields as served.
    message = anchor_message(
        tenant_id=anchor["tenant_id"],
        seq=anchor["seq"],
        hash=anchor["hash"],
        anchored_at=anchor["anchored_at"],
    )
    assert signing.verify(message, anchor["signature"], anchor["public_key"])
    recorded = _last_event(tenant_a)
    assert (recorded.action, recorded.outcome, recorded.actor_label) == (
        "audit.verified",
        "success",
        "olivia",
    )
    assert recorded.changes["checked"] == seqs[-1] and recorded.changes["via"] == "token"
    assert isinstance(recorded.changes["via_id"], int)


@pytest.mark.django_db
def test_a_range(olivia_api: APIClient, tenant_a: Tenant, append: Append) -> None:
    seqs = append(tenant_a, 100)
    body = olivia_api.post(URL, {"from_seq": seqs[10], "to_seq": seqs[59]}, format="json").json()
    assert (body["ok"], body["checked"], body["from_seq"], body["to_seq"]) == (True, 50, seqs[10], seqs[59])
    # Open-ended: up to the head, the first check's audit.verified event included.
    assert olivia_api.post(URL, {"from_seq": seqs[90]}, format="json").json()["checked"] == 11
    assert olivia_api.post(URL, {"to_seq": 5}, format="json").json()["checked"] == 5
    # Past the head: checks what exists.
    assert olivia_api.post(URL, {"from_seq": seqs[-1], "to_seq": 10**12}, format="json").json()["ok"]
    recorded = _last_event(tenant_a)
    assert recorded.action == "audit.verified"
    assert (recorded.changes["from_seq"], recorded.changes["to_seq"]) == (seqs[-1], 10**12)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"from_seq": 0},
        {"to_seq": -3},
        {"from_seq": "abc"},
        {"from_seq": 10, "to_seq": 9},
        {"from_seq": 2**63},
        {"from": 1},
        ["not", "an", "object"],
    ],
)
def test_bad_bodies_are_400(olivia_api: APIClient, tenant_a: Tenant, body: Any) -> None:
    response = olivia_api.post(URL, body, format="json")
    assert response.status_code == 400, (body, response.status_code)
    assert _last_event(tenant_a).action != "audit.verified"


@pytest.mark.django_db
def test_malformed_json_is_400(olivia_api: APIClient, tenant_a: Tenant) -> None:
    response = olivia_api.generic("POST", URL, "{not json", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_a_tampered_row_is_found_whole_and_in_a_range_but_not_outside_it(
    olivia_api: APIClient, tenant_a: Tenant, append: Append, superuser_sql: SuperuserSql
) -> None:
    seqs = append(tenant_a, 60)
    broken = seqs[30]
    superuser_sql(
        "region_eu",
        "UPDATE audit_auditevent SET target_label = 'innocent' WHERE tenant_id = %s AND seq = %s",
        [tenant_a.id, broken],
    )
    whole = olivia_api.post(URL, format="json").json()
    assert (whole["ok"], whole["broken_seq"], whole["kind"]) == (False, broken, "modified")
    assert whole["checked"] == broken - 1
    recorded = _last_event(tenant_a)
    assert (recorded.action, recorded.outcome) == ("audit.verified", "failure")
    assert recorded.changes["broken_seq"] == broken
    ranged = olivia_api.post(URL, {"from_seq": broken - 5, "to_seq": broken + 5}, format="json").json()
    assert (ranged["ok"], ranged["broken_seq"]) == (False, broken)
    # Past the modified row: its successor still links to the hash it had, so the range verifies.
    after = olivia_api.post(URL, {"from_seq": broken + 1, "to_seq": seqs[-1]}, format="json").json()
    assert after["ok"] is True and after["checked"] == seqs[-1] - broken


@pytest.mark.django_db(transaction=True)
def test_a_range_whose_predecessor_is_gone_or_relinked(
    olivia_api: APIClient, tenant_a: Tenant, append: Append, superuser_sql: SuperuserSql
) -> None:
    seqs = append(tenant_a, 30)
    superuser_sql(
        "region_eu", "DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq = %s", [tenant_a.id, seqs[9]]
    )
    body = olivia_api.post(URL, {"from_seq": seqs[10], "to_seq": seqs[20]}, format="json").json()
    assert (body["ok"], body["broken_seq"], body["kind"]) == (False, seqs[9], "missing")
    # A first event whose prev_hash does not match the event before it.
    superuser_sql(
        "region_eu",
        "UPDATE audit_auditevent SET prev_hash = %s WHERE tenant_id = %s AND seq = %s",
        ["f" * 64, tenant_a.id, seqs[20]],
    )
    body = olivia_api.post(URL, {"from_seq": seqs[20]}, format="json").json()
    assert (body["ok"], body["broken_seq"], body["kind"]) == (False, seqs[20], "unlinked")


@pytest.mark.django_db(transaction=True)
def test_a_deleted_tail_is_found_by_the_anchor(
    olivia_api: APIClient, tenant_a: Tenant, append: Append, superuser_sql: SuperuserSql
) -> None:
    seqs = append(tenant_a, 20)
    assert olivia_api.post(URL, format="json").json()["ok"]  # anchors the head
    superuser_sql(
        "region_eu",
        "DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq >= %s",
        [tenant_a.id, seqs[15]],
    )
    body = olivia_api.post(URL, format="json").json()
    assert (body["ok"], body["kind"], body["broken_seq"]) == (False, "truncated", seqs[15])
    ranged = olivia_api.post(URL, {"from_seq": seqs[5], "to_seq": seqs[18]}, format="json").json()
    assert (ranged["ok"], ranged["kind"]) == (False, "truncated")


@pytest.mark.django_db
def test_a_range_after_a_retention_purge_starts_at_the_checkpoint(
    olivia_api: APIClient, tenant_a: Tenant, append: Append
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.audit.services import audit_purge

    old = append(tenant_a, 20, start=timezone.now() - timedelta(days=400))
    kept = append(tenant_a, 10)
    # The purge cuts through the newest event older than the cut: everything up to old[-1] goes.
    assert audit_purge(tenant=tenant_a, before=timezone.now() - timedelta(days=300)) == old[-1]
    first_kept = olivia_api.get(
        "/api/v1/tenants/tenant-a/audit/events/", {"order": "oldest", "limit": "1"}
    ).json()["results"][0]["seq"]
    assert first_kept == kept[0]
    for body in ({"from_seq": old[3], "to_seq": kept[5]}, {"from_seq": first_kept}, {}):
        result = olivia_api.post(URL, body, format="json").json()
        assert result["ok"] is True, (body, result)
    ranged = olivia_api.post(URL, {"from_seq": old[3], "to_seq": kept[5]}, format="json").json()
    assert ranged["checked"] == kept[5] - first_kept + 1


@pytest.mark.django_db(transaction=True)
def test_the_command_verifies_a_range_too(
    tenant_a: Tenant, append: Append, superuser_sql: SuperuserSql, capsys: pytest.CaptureFixture[str]
) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    seqs = append(tenant_a, 30)
    call_command("audit_verify", "--tenant", "tenant-a", "--from-seq", str(seqs[5]), "--to-seq", str(seqs[9]))
    assert "tenant-a: ok (5 events)" in capsys.readouterr().out
    superuser_sql(
        "region_eu",
        "UPDATE audit_auditevent SET action = 'x' WHERE tenant_id = %s AND seq = %s",
        [tenant_a.id, seqs[20]],
    )
    call_command("audit_verify", "--tenant", "tenant-a", "--to-seq", str(seqs[19]))
    with pytest.raises(CommandError):
        call_command("audit_verify", "--tenant", "tenant-a", "--from-seq", str(seqs[15]))
    assert f"BROKEN at #{seqs[20]}" in capsys.readouterr().out
    with pytest.raises(CommandError, match="need --tenant"):
        call_command("audit_verify", "--from-seq", "3")
