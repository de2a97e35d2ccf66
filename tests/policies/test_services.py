"""Data policies: defaults, presets, residency, retention, redaction, tokenization and erasure."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.audit.models import AuditEvent, Outcome
from apps.audit.selectors import audit_verify_chain
from apps.audit.services import audit_record
from apps.core.context import TenantRef, tenant_context
from apps.core.errors import ValidationFailed
from apps.policies import tasks
from apps.policies.models import Category, DataPolicy
from apps.policies.registry import Subject, purgers
from apps.policies.selectors import allowed_regions, policy_explain, policy_get, transfer_allowed
from apps.policies.services import (
    TransferRefused,
    erase_subject,
    policy_apply_preset,
    policy_update,
    preset_values,
    pseudonym,
    redact_for_external,
    redact_for_storage,
    retention_enforce,
    tokenize_pii,
    transfer_check,
)
from apps.security.models import VaultEntry
from apps.security.services import vault_reveal, vault_tokenize
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db

TRANSCRIPT = "Mail me at jane.doe@example.com or call +49 170 1234567."


def last_event(tenant: Tenant, action: str) -> AuditEvent:
    with tenant_context(tenant):
        return AuditEvent.objects.filter(action=action).order_by("-seq").first()  # type: ignore[return-value]


# --- defaults and presets ----------------------------------------------------------------------------------
def test_policy_is_created_once_with_privacy_first_defaults(tenant_a: Tenant) -> None:
    policy = policy_get(tenant=tenant_a)
    assert policy_get(tenant=tenant_a).pk == policy.pk
    with tenant_context(tenant_a):
        assert DataPolicy.objects.count() == 1
    assert policy.tenant_id == tenant_a.id
    assert policy.allowed_regions == []
    assert policy.redact_transcripts is True
    assert policy.transcript_retention_days == 365
    assert policy.synced_record_retention_days is None
    assert policy.sync_log_retention_days == 90
    assert policy.audit_retention_days is None
    assert allowed_regions(tenant=tenant_a) == ["eu"]


def test_policy_lives_in_the_tenant_home_region(tenant_a: Tenant, tenant_b: Tenant) -> None:
    policy_get(tenant=tenant_a)
    policy_get(tenant=tenant_b)
    assert DataPolicy.all_tenants.using("region_eu").filter(tenant_id=tenant_a.id).exists()
    assert not DataPolicy.all_tenants.using("region_eu").filter(tenant_id=tenant_b.id).exists()
    assert DataPolicy.all_tenants.using("region_us").filter(tenant_id=tenant_b.id).exists()


def test_presets(tenant_a: Tenant, tenant_b: Tenant, alice: Any) -> None:
    strict = policy_apply_preset(tenant=tenant_a, preset="strict", actor=alice)
    assert strict.allowed_regions == []
    assert strict.redact_transcripts is True
    assert strict.transcript_retention_days == 30
    assert strict.audit_retention_days == 365
    lenient = policy_apply_preset(tenant=tenant_b, preset="lenient")
    assert lenient.allowed_regions == ["eu"]  # the home region (us) is implied, never stored
    assert lenient.redact_transcripts is False
    assert lenient.audit_retention_days is None
    assert lenient.transcript_retention_days == 730
    assert set(allowed_regions(tenant=tenant_b)) == {"us", "eu"}
    assert preset_values(preset="strict")["sync_log_retention_days"] == 30
    with pytest.raises(ValueError, match="unknown preset"):
        preset_values(preset="chaotic")


def test_update_is_audited_with_before_and_after_and_only_when_something_changed(
    tenant_a: Tenant, alice: Any
) -> None:
    policy_update(
        tenant=tenant_a, values={"transcript_retention_days": 30, "allowed_regions": ["US"]}, actor=alice
    )
    event = last_event(tenant_a, "policy.updated")
    assert event.actor_id == alice.pk
    assert event.changes == {
        "transcript_retention_days": [365, 30],
        "allowed_regions": [[], ["us"]],
    }
    seq = event.seq
    policy_update(tenant=tenant_a, values={"transcript_retention_days": 30}, actor=alice)
    assert last_event(tenant_a, "policy.updated").seq == seq


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"transcript_retention_days": -1}, "transcript_retention_days"),
        ({"sync_log_retention_days": 0}, "sync_log_retention_days"),
        ({"audit_retention_days": 30}, "audit_retention_days"),
        ({"synced_record_retention_days": 10**6}, "synced_record_retention_days"),
        ({"allowed_regions": ["mars"]}, "allowed_regions"),
    ],
)
def test_update_refuses_bad_values_with_field_errors(
    tenant_a: Tenant, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        policy_update(tenant=tenant_a, values=values)
    assert field in excinfo.value.errors
    assert policy_get(tenant=tenant_a).audit_retention_days is None


def test_empty_retention_means_keep_forever(tenant_a: Tenant) -> None:
    policy = policy_update(tenant=tenant_a, values={"transcript_retention_days": ""})
    assert policy.transcript_retention_days is None
    assert "Conversation transcripts are kept with no time limit." in " ".join(
        policy_explain(tenant=tenant_a)["retention"]
    )


# --- residency -------------------------------------------------------------------------------------------
def test_transfer_to_the_home_region_is_always_allowed(tenant_a: Tenant) -> None:
    assert transfer_allowed(tenant=tenant_a, destination_region="eu")
    assert transfer_allowed(tenant=tenant_a, destination_region=" EU ")
    transfer_check(tenant=tenant_a, destination_region="eu", purpose="llm.generate")
    assert last_event(tenant_a, "policy.transfer_refused") is None


def test_transfer_to_another_region_is_refused_and_audited(tenant_a: Tenant) -> None:
    assert not transfer_allowed(tenant=tenant_a, destination_region="us")
    assert not transfer_allowed(tenant=tenant_a, destination_region="")
    with pytest.raises(TransferRefused) as excinfo:
        transfer_check(tenant=tenant_a, destination_region="us", purpose="llm.generate")
    message = str(excinfo.value)
    assert "US" in message and "llm.generate" in message
    event = last_event(tenant_a, "policy.transfer_refused")
    assert event.outcome == Outcome.DENIED
    assert event.changes == {"destination_region": "us", "purpose": "llm.generate"}
    assert audit_verify_chain(tenant=tenant_a).ok


def test_transfer_allowed_once_the_policy_lists_the_region(tenant_a: Tenant) -> None:
    policy_update(tenant=tenant_a, values={"allowed_regions": ["us"]})
    transfer_check(tenant=tenant_a, destination_region="us", purpose="connector.salesforce")
    assert transfer_allowed(tenant=tenant_a, destination_region="us")
    assert not transfer_allowed(tenant=tenant_a, destination_region="apac")


# --- retention -------------------------------------------------------------------------------------------
def test_audit_events_are_registered_for_retention() -> None:
    assert Category.AUDIT_EVENTS in purgers()


def test_retention_purges_old_audit_events_in_batches_and_keeps_the_chain_verifiable(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    for i in range(7):
        audit_record("test.event", tenant=tenant_a, target_type="thing", target_id=i)
    audit_record("test.event", tenant=tenant_b)
    policy_update(tenant=tenant_a, values={"audit_retention_days": 365})
    with tenant_context(tenant_a):
        existing = AuditEvent.objects.count()
    # 400 days from now, everything recorded so far is older than the 365 days the policy keeps.
    report = retention_enforce(tenant=tenant_a, now=timezone.now() + timedelta(days=400), batch_size=3)
    assert report.counts[Category.AUDIT_EVENTS] == existing  # other categories register their own purgers
    assert sum(report.counts.values()) == existing
    event = last_event(tenant_a, "retention.purged")
    assert event.changes["counts"]["audit_events"] == existing
    assert event.changes["total"] == existing
    with tenant_context(tenant_a):
        assert list(AuditEvent.objects.values_list("action", flat=True)) == ["retention.purged"]
    assert audit_verify_chain(tenant=tenant_a).ok
    with tenant_context(tenant_b):
        assert AuditEvent.objects.count() == 2  # other tenants untouched
    audit_record("test.after", tenant=tenant_a)
    assert audit_verify_chain(tenant=tenant_a).ok


def test_retention_keeps_recent_events_and_skips_keep_forever(tenant_a: Tenant) -> None:
    audit_record("test.event", tenant=tenant_a)
    report = retention_enforce(tenant=tenant_a, now=timezone.now() + timedelta(days=400))
    assert Category.AUDIT_EVENTS not in report.counts  # the default keeps audit events forever
    assert sum(report.counts.values()) == 0
    policy_update(tenant=tenant_a, values={"audit_retention_days": 365})
    report = retention_enforce(tenant=tenant_a)
    assert report.counts[Category.AUDIT_EVENTS] == 0
    with tenant_context(tenant_a):
        assert AuditEvent.objects.filter(action="test.event").exists()
    assert audit_verify_chain(tenant=tenant_a).ok


def test_retention_task_runs_per_tenant_and_ignores_deleted_tenants(tenant_a: Tenant) -> None:
    policy_update(tenant=tenant_a, values={"audit_retention_days": 365})
    assert tasks.retention_enforce_tenant(tenant_id=tenant_a.id) == 0
    assert last_event(tenant_a, "retention.purged") is not None
    assert tasks.retention_enforce_tenant(tenant_id=987654321) is None


def test_daily_task_queues_one_run_per_tenant(
    tenant_a: Tenant, tenant_b: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[int] = []
    monkeypatch.setattr(
        tasks.retention_enforce_tenant, "delay", lambda *, tenant_id: queued.append(tenant_id)
    )
    assert tasks.retention_enforce_all() == 2
    assert sorted(queued) == sorted([tenant_a.id, tenant_b.id])


# --- redaction and tokenization ---------------------------------------------------------------------------
def test_redaction_for_storage_follows_the_policy(tenant_a: Tenant) -> None:
    redacted = redact_for_storage(tenant=tenant_a, text=TRANSCRIPT)
    assert "jane.doe@example.com" not in redacted and "[EMAIL]" in redacted and "[PHONE]" in redacted
    policy_update(tenant=tenant_a, values={"redact_transcripts": False})
    assert redact_for_storage(tenant=tenant_a, text=TRANSCRIPT) == TRANSCRIPT


def test_redaction_for_external_always_redacts(tenant_a: Tenant) -> None:
    policy_update(tenant=tenant_a, values={"redact_transcripts": False})
    assert redact_for_external(TRANSCRIPT) == "Mail me at [EMAIL] or call [PHONE]."


def test_tokenization_round_trip(in_tenant_a: Tenant) -> None:
    text, tokens = tokenize_pii(text=TRANSCRIPT + " Again: jane.doe@example.com", kinds=["email"])
    assert len(tokens) == 1
    assert "jane.doe@example.com" not in text and text.count(tokens[0]) == 2
    assert "+49 170 1234567" in text  # only the kinds asked for
    assert tokens[0].startswith("tok_email_")
    assert vault_reveal(token=tokens[0]) == "jane.doe@example.com"
    assert VaultEntry.objects.count() == 1


# --- erasure ---------------------------------------------------------------------------------------------
def test_erasure_removes_only_that_subject_in_that_tenant(
    tenant_a: Tenant, tenant_b: Tenant, alice: Any
) -> None:
    with tenant_context(tenant_a):
        vault_tokenize(value="Jane.Doe@example.com", kind="email")
        vault_tokenize(value="jane.doe@example.com", kind="email")
        vault_tokenize(value="+49 170 1234567", kind="phone")
        keep = vault_tokenize(value="john@example.com", kind="email")
    with tenant_context(tenant_b):
        other = vault_tokenize(value="jane.doe@example.com", kind="email")
    report = erase_subject(tenant=tenant_a, email=" jane.doe@EXAMPLE.com", phone="491701234567", actor=alice)
    assert report.counts["vault"] == 3
    assert report.total == 3
    with tenant_context(tenant_a):
        assert list(VaultEntry.objects.values_list("token", flat=True)) == [keep]
    with tenant_context(tenant_b):
        assert vault_reveal(token=other) == "jane.doe@example.com"


def test_erasure_audit_event_has_a_pseudonym_and_no_identifier(tenant_a: Tenant, alice: Any) -> None:
    report = erase_subject(tenant=tenant_a, email="jane.doe@example.com", actor=alice)
    event = last_event(tenant_a, "policy.erasure")
    assert event.actor_id == alice.pk
    assert event.changes["counts"]["vault"] == 0
    assert sum(event.changes["counts"].values()) == 0
    assert event.changes["pseudonyms"] == report.pseudonyms
    flat = repr(event.changes) + event.target_id + event.target_label
    assert "jane" not in flat.lower() and "example.com" not in flat
    digest = report.pseudonyms["email"]
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest == pseudonym(tenant=tenant_a, kind="email", value="jane.doe@example.com")
    # Keyed: the plain SHA-256 of the e-mail (what anyone could compute) is not the pseudonym.
    assert digest != hashlib.sha256(b"jane.doe@example.com").hexdigest()
    other_tenant = TenantRef(id=tenant_a.id + 1, slug="other", region="eu")
    assert digest != pseudonym(tenant=other_tenant, kind="email", value="jane.doe@example.com")
    assert audit_verify_chain(tenant=tenant_a).ok


def test_erasure_needs_an_identifier(tenant_a: Tenant, alice: Any) -> None:
    with pytest.raises(ValidationFailed):
        erase_subject(tenant=tenant_a, email="  ", actor=alice)


def test_subject_matching_normalizes() -> None:
    subject = Subject.of(email=" A@B.example ", phone="+1 (555) 010-0000", external_id=" 003XYZ ")
    assert subject.matches("a@b.example")
    assert subject.matches("15550100000")
    assert subject.matches("003XYZ")
    assert not subject.matches("003xyz")


def test_erase_subject_command(tenant_a: Tenant, capsys: pytest.CaptureFixture[str]) -> None:
    with tenant_context(tenant_a):
        vault_tokenize(value="jane.doe@example.com", kind="email")
    call_command("erase_subject", "--tenant", tenant_a.slug, "--email", "jane.doe@example.com")
    out = capsys.readouterr().out
    assert "vault: 1" in out and "Erased 1 items" in out
    assert "jane" not in out


# --- demo ------------------------------------------------------------------------------------------------
def test_seed_demo_sets_a_strict_and_a_lenient_policy_idempotently(regions: Any) -> None:
    from apps.console.demo import seed_demo

    seed_demo()
    acme, globex = Tenant.objects.get(slug="acme"), Tenant.objects.get(slug="globex")
    strict, lenient = policy_get(tenant=acme), policy_get(tenant=globex)
    assert (strict.allowed_regions, strict.redact_transcripts, strict.transcript_retention_days) == (
        [],
        True,
        30,
    )
    assert (lenient.allowed_regions, lenient.redact_transcripts) == (["eu"], False)
    assert set(allowed_regions(tenant=globex)) == {"eu", "us"}
    updates = last_event(acme, "policy.updated").seq
    seed_demo()
    assert last_event(acme, "policy.updated").seq == updates
