"""Delivery to real receivers on loopback: syslog over TLS (RFC 5424 in RFC 5425 frames, mutual TLS), Splunk
HEC and the signed webhook; outages keep the cursor and nothing is lost or reordered; purged events are
skipped with a note; the SSRF guard in production; the metrics."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connections
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit_purge, audit_record
from apps.core.context import tenant_context
from apps.siem.models import SiemDestination, SiemKind
from apps.siem.services import START_NOW, destination_create, destination_update, siem_deliver, siem_due
from apps.tenants.models import Tenant
from tests.fixtures.metrics import scrape, value
from tests.siem.helpers import assert_in_order_without_gaps

pytestmark = pytest.mark.django_db


def append(tenant: Tenant, n: int, *, outcome: str = "success") -> None:
    for i in range(n):
        audit_record("test.event", tenant=tenant, target_type="thing", target_id=i, outcome=outcome)


def head(tenant: Tenant) -> int:
    with tenant_context(tenant):
        return int(AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0)


def deliver(tenant: Tenant, destination: SiemDestination) -> Any:
    with tenant_context(tenant):
        return siem_deliver(destination_id=destination.pk)


def reload(tenant: Tenant, destination: SiemDestination) -> SiemDestination:
    with tenant_context(tenant):
        return SiemDestination.objects.get(pk=destination.pk)


def test_syslog_over_tls_sends_rfc5424_messages_in_octet_counted_frames(
    tenant_a: Tenant, syslog: Any, pki: Any, make_destination: Any, settings: Any
) -> None:
    settings.HUB_SIEM_BATCH = 4
    destination = make_destination(tenant_a, SiemKind.SYSLOG_TLS, syslog, pki)
    append(tenant_a, 6)
    audit_record("test.denied", tenant=tenant_a, outcome="denied", changes={"why": 'a "quoted" ] value'})
    last = head(tenant_a)

    result = deliver(tenant_a, destination)

    assert result.delivered == last and not result.failed
    assert assert_in_order_without_gaps(syslog.events(), first=1, last=last) == list(range(1, last + 1))
    assert syslog.connections == result.batches == -(-last // 4)  # one TLS connection per batch
    message = syslog.messages[-1]
    assert (message["facility"], message["severity"]) == (13, 4)  # log audit, warning for "denied"
    assert message["app"] == "hub" and message["msgid"] == "test.denied"
    assert message["sd_id"] == "hub@32473"
    with tenant_context(tenant_a):
        row = AuditEvent.objects.get(seq=last)
    assert message["sd"] == {"tenant": tenant_a.slug, "seq": str(last), "hash": row.hash}
    assert message["event"]["id"] == f"{tenant_a.slug}-{last}"
    assert message["event"]["prev_hash"] == row.prev_hash and message["event"]["changes"]["why"]
    assert message["timestamp"].endswith("Z")
    assert syslog.messages[-2]["severity"] == 6  # success: informational
    after = reload(tenant_a, destination)
    assert after.delivered_seq == last and after.delivered_count == last and after.last_delivered_at
    assert deliver(tenant_a, destination).delivered == 0  # nothing left


def test_mutual_tls_without_a_client_certificate_is_refused_and_with_one_delivered(
    tenant_a: Tenant, pki: Any, make_destination: Any, fast_retry: None
) -> None:
    from tests.siem.helpers import SyslogTlsListener

    listener = SyslogTlsListener(pki, require_client_cert=True).start()
    try:
        destination = make_destination(tenant_a, SiemKind.SYSLOG_TLS, listener, pki)
        append(tenant_a, 3)
        first = deliver(tenant_a, destination)
        assert first.failed and first.delivered == 0
        assert listener.events() == [] and listener.refused >= 1
        failed = reload(tenant_a, destination)
        assert failed.delivered_seq == 0 and failed.consecutive_failures == 1 and failed.last_error

        with tenant_context(tenant_a):
            destination_update(
                destination=failed,
                data={"host": "127.0.0.1", "port": listener.port, "url": "", "ca_bundle": pki.ca_pem,
                      "client_cert": pki.client_cert_pem, "client_key": pki.client_key_pem},
            )  # fmt: skip
        second = deliver(tenant_a, destination)
        assert not second.failed
        # The update's own event is delivered too.
        assert_in_order_without_gaps(listener.events(), first=1, last=head(tenant_a))
    finally:
        listener.stop()


def test_splunk_hec_batches_and_token(
    tenant_a: Tenant, hec: Any, pki: Any, make_destination: Any, settings: Any
) -> None:
    settings.HUB_SIEM_BATCH = 3
    destination = make_destination(tenant_a, SiemKind.SPLUNK_HEC, hec, pki)
    append(tenant_a, 7)
    last = head(tenant_a)
    assert deliver(tenant_a, destination).delivered == last
    assert_in_order_without_gaps(hec.received(), first=1, last=last)
    wrapper = hec.hec_wrappers[0]
    assert wrapper["source"] == "hub:audit" and wrapper["sourcetype"] == "_json"
    assert wrapper["host"] == settings.HUB_SIEM_HOSTNAME and isinstance(wrapper["time"], float)


def test_splunk_hec_wrong_token_keeps_the_cursor_and_backs_off_to_the_cap(
    tenant_a: Tenant, hec: Any, pki: Any, make_destination: Any, settings: Any, caplog: Any
) -> None:
    destination = make_destination(tenant_a, SiemKind.SPLUNK_HEC, hec, pki, token="not-the-token-123")
    result = deliver(tenant_a, destination)
    after = reload(tenant_a, destination)
    assert result.failed and hec.refused == [403] and after.delivered_seq == 0
    assert "invalid token (code 4)" in after.last_error
    assert "not-the-token-123" not in after.last_error and "not-the-token-123" not in caplog.text
    # Permanent (a 4xx that is not worth retrying): tried again only after the cap.
    cap = timedelta(seconds=settings.HUB_SIEM_RETRY_MAX_SECONDS)
    assert after.next_attempt_at is not None and after.last_error_at is not None
    assert after.next_attempt_at - after.last_error_at >= cap - timedelta(seconds=1)
    assert deliver(tenant_a, destination).delivered == 0  # backing off: not tried


def test_splunk_hec_busy_is_transient(
    tenant_a: Tenant, hec: Any, pki: Any, make_destination: Any, settings: Any, fast_retry: None
) -> None:
    destination = make_destination(tenant_a, SiemKind.SPLUNK_HEC, hec, pki)
    hec.fail_with = 503
    assert deliver(tenant_a, destination).failed
    after = reload(tenant_a, destination)
    assert "server is busy (code 9)" in after.last_error and after.delivered_seq == 0
    hec.fail_with = None
    assert deliver(tenant_a, destination).delivered == head(tenant_a)


def test_webhook_is_signed_and_a_wrong_secret_is_refused(
    tenant_a: Tenant, webhook: Any, pki: Any, make_destination: Any, fast_retry: None
) -> None:
    good = make_destination(tenant_a, SiemKind.WEBHOOK, webhook, pki, name="good")
    bad = make_destination(tenant_a, SiemKind.WEBHOOK, webhook, pki, name="bad", hmac_secret="wrong-secret-1")
    append(tenant_a, 4)
    assert deliver(tenant_a, bad).failed
    assert webhook.refused == [401] and webhook.received() == []
    assert reload(tenant_a, bad).delivered_seq == 0
    assert "HTTP 401" in reload(tenant_a, bad).last_error
    last = head(tenant_a)
    deliver(tenant_a, good)
    events = webhook.received()
    assert_in_order_without_gaps(events, first=1, last=last)
    assert {"id", "seq", "hash", "prev_hash"} <= set(events[0])


@pytest.mark.parametrize("kind", [SiemKind.SYSLOG_TLS, SiemKind.WEBHOOK, SiemKind.SPLUNK_HEC])
def test_an_outage_in_the_middle_loses_nothing_and_reorders_nothing(
    kind: str, tenant_a: Tenant, syslog: Any, hec: Any, webhook: Any, pki: Any, make_destination: Any,
    settings: Any, fast_retry: None,
) -> None:  # fmt: skip
    settings.HUB_SIEM_BATCH = 5
    receivers: dict[str, Any] = {
        SiemKind.SYSLOG_TLS: syslog,
        SiemKind.WEBHOOK: webhook,
        SiemKind.SPLUNK_HEC: hec,
    }
    receiver = receivers[kind]
    received = syslog.events if kind == SiemKind.SYSLOG_TLS else receiver.received
    destination = make_destination(tenant_a, kind, receiver, pki)
    append(tenant_a, 12)
    deliver(tenant_a, destination)
    before = reload(tenant_a, destination).delivered_seq
    assert before == head(tenant_a)

    receiver.stop()  # the SIEM goes down; events keep coming
    append(tenant_a, 23)
    for _ in range(3):
        result = deliver(tenant_a, destination)
        assert result.failed and result.delivered == 0
        down = reload(tenant_a, destination)
        assert down.delivered_seq == before  # the cursor stays
        with tenant_context(tenant_a):
            SiemDestination.objects.filter(pk=destination.pk).update(next_attempt_at=None)
    assert down.consecutive_failures == 3 and down.last_error
    with tenant_context(tenant_a):
        SiemDestination.objects.filter(pk=destination.pk).update(next_attempt_at=None)
    assert (tenant_a.id, str(destination.pk)) in siem_due()  # beat sees the backlog

    receiver.start()  # back, on the same port
    append(tenant_a, 4)
    result = deliver(tenant_a, destination)
    last = head(tenant_a)
    assert not result.failed and reload(tenant_a, destination).delivered_seq == last
    assert reload(tenant_a, destination).consecutive_failures == 0
    seqs = assert_in_order_without_gaps(received(), first=1, last=last)
    assert seqs == list(range(1, last + 1))  # nothing was acknowledged twice: no duplicates either


def test_purged_events_are_skipped_with_a_note(
    tenant_a: Tenant, webhook: Any, pki: Any, make_destination: Any
) -> None:
    destination = make_destination(tenant_a, SiemKind.WEBHOOK, webhook, pki)
    with tenant_context(tenant_a):
        SiemDestination.objects.filter(pk=destination.pk).update(enabled=False)
    append(tenant_a, 5)
    purged_through = head(tenant_a)
    assert audit_purge(tenant=tenant_a, before=timezone.now() + timedelta(seconds=1)) == purged_through
    append(tenant_a, 3)
    with tenant_context(tenant_a):
        SiemDestination.objects.filter(pk=destination.pk).update(enabled=True)
    assert deliver(tenant_a, destination).delivered == 3
    assert [e["seq"] for e in webhook.received()] == list(range(purged_through + 1, purged_through + 4))
    assert f"Events 1-{purged_through} were purged" in reload(tenant_a, destination).note


def test_a_new_destination_starts_now_or_from_the_beginning(
    tenant_a: Tenant, webhook: Any, pki: Any, make_destination: Any, settings: Any
) -> None:
    append(tenant_a, 3)
    at_head = head(tenant_a)
    now_one = destination_create(
        tenant=tenant_a,
        data={"name": "now", "kind": SiemKind.WEBHOOK, "url": webhook.url, "ca_bundle": pki.ca_pem,
              "hmac_secret": "s3cret-s3cret"},
        start=START_NOW,
    )  # fmt: skip
    assert now_one.delivered_seq == at_head
    beginning = make_destination(tenant_a, SiemKind.WEBHOOK, webhook, pki, name="all")
    assert beginning.delivered_seq == 0


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_deliver_in_order_without_duplicates(
    tenant_a: Tenant, syslog: Any, pki: Any, make_destination: Any, settings: Any
) -> None:
    """Two threads (own database connections) race on one destination: the row lock lets one send at a
    time, each batch after the cursor the other left, so the receiver sees one ordered stream."""
    settings.HUB_SIEM_BATCH = 7
    destination = make_destination(tenant_a, SiemKind.SYSLOG_TLS, syslog, pki)
    append(tenant_a, 90)
    last = head(tenant_a)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with tenant_context(tenant_a):
                while SiemDestination.objects.get(pk=destination.pk).delivered_seq < last:
                    siem_deliver(destination_id=destination.pk, budget_seconds=0)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert assert_in_order_without_gaps(syslog.events(), first=1, last=last) == list(range(1, last + 1))


def test_ssrf_guard_refuses_private_and_metadata_targets_in_production(
    tenant_a: Tenant, syslog: Any, pki: Any, make_destination: Any, settings: Any
) -> None:
    destination = make_destination(tenant_a, SiemKind.SYSLOG_TLS, syslog, pki)  # allowed outside production
    settings.HUB_ENV = "production"
    settings.HUB_CONNECTOR_ALLOW_HOSTS = None
    for data in (
        {"kind": SiemKind.SYSLOG_TLS, "host": "169.254.169.254", "port": 6514},
        {"kind": SiemKind.SYSLOG_TLS, "host": "127.0.0.1", "port": 6514},
        {"kind": SiemKind.WEBHOOK, "url": "https://10.0.0.5/hook", "hmac_secret": "x" * 12},
        {"kind": SiemKind.SPLUNK_HEC, "url": "https://[::ffff:169.254.169.254]/", "token": "x" * 12},
        {"kind": SiemKind.WEBHOOK, "url": "http://siem.example.com/hook", "hmac_secret": "x" * 12},
    ):
        with pytest.raises(ValidationError):
            destination_create(tenant=tenant_a, data={"name": "evil", **data})
    with tenant_context(tenant_a):
        assert not SiemDestination.objects.filter(name="evil").exists()
    result = deliver(tenant_a, destination)  # checked again at send time
    assert result.failed and syslog.connections == 0
    assert "non-public address" in reload(tenant_a, destination).last_error


def test_metrics_count_deliveries_failures_and_backlog(
    tenant_a: Tenant, webhook: Any, pki: Any, make_destination: Any, fast_retry: None, settings: Any
) -> None:
    settings.HUB_METRICS_CACHE_SECONDS = 0
    families = scrape()
    delivered0 = value(families, "hub_siem_delivered_total", kind="webhook")
    failures0 = value(families, "hub_siem_failures_total", kind="webhook")
    destination = make_destination(tenant_a, SiemKind.WEBHOOK, webhook, pki)
    append(tenant_a, 5)
    backlog = head(tenant_a)
    families = scrape()
    assert value(families, "hub_siem_backlog_events", tenant=tenant_a.slug, kind="webhook") == backlog
    assert value(families, "hub_siem_oldest_undelivered_seconds", tenant=tenant_a.slug, kind="webhook") >= 0
    webhook.stop()
    deliver(tenant_a, destination)
    webhook.start()
    deliver(tenant_a, destination)
    families = scrape()
    assert value(families, "hub_siem_delivered_total", kind="webhook") == delivered0 + backlog
    assert value(families, "hub_siem_failures_total", kind="webhook") == failures0 + 1
    assert value(families, "hub_siem_backlog_events", tenant=tenant_a.slug, kind="webhook") == 0
    assert value(families, "hub_siem_oldest_undelivered_seconds", tenant=tenant_a.slug, kind="webhook") == 0


def test_appends_kick_delivery_once_per_window_after_commit(
    tenant_a: Tenant, webhook: Any, pki: Any, make_destination: Any, monkeypatch: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    from django.core.cache import cache

    from apps.siem import services
    from apps.siem.tasks import siem_deliver_due, siem_kick_task

    destination = make_destination(tenant_a, SiemKind.WEBHOOK, webhook, pki)
    sent: list[tuple[str, dict[str, Any]]] = []

    def publish(name: str, kwargs: dict[str, Any], **options: Any) -> bool:
        sent.append((name, {"kwargs": kwargs, **options}))
        return True

    monkeypatch.setattr(services, "_publish", publish)
    services._tried.clear()
    cache.delete(f"siem:kick:{tenant_a.id}")
    with django_capture_on_commit_callbacks(using=tenant_a.home_region.db_alias, execute=False) as hooks:
        append(tenant_a, 5)
    assert sent == []  # nothing before the commit
    for hook in hooks:
        hook()
    assert sent == [(services.KICK_TASK, {"kwargs": {"tenant_id": tenant_a.id}, "countdown": 1})]
    services._tried.clear()  # another process in the same window: Redis says no
    hooks[0]()
    assert len(sent) == 1

    sent.clear()
    assert siem_kick_task(tenant_id=tenant_a.id) == 1
    assert sent == [
        (services.DELIVER_TASK, {"kwargs": {"tenant_id": tenant_a.id, "destination_id": str(destination.pk)}})
    ]
    sent.clear()
    assert siem_deliver_due() == 1  # beat: the backlog, whatever the kicks did
    assert sent[0][1]["kwargs"]["destination_id"] == str(destination.pk)


def test_appends_of_a_tenant_without_enabled_destinations_queue_nothing(
    tenant_a: Tenant, tenant_b: Tenant, webhook: Any, pki: Any, make_destination: Any, monkeypatch: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    from django.core.cache import cache

    from apps.siem import services

    sent: list[str] = []

    def publish(name: str, kwargs: dict[str, Any], **options: Any) -> bool:
        sent.append(name)
        return True

    monkeypatch.setattr(services, "_publish", publish)
    disabled = make_destination(tenant_a, SiemKind.WEBHOOK, webhook, pki)
    with tenant_context(tenant_a):
        SiemDestination.objects.filter(pk=disabled.pk).update(enabled=False)
    for tenant in (tenant_a, tenant_b):  # a disabled destination; none at all
        services._tried.clear()
        cache.delete(f"siem:kick:{tenant.id}")
        with django_capture_on_commit_callbacks(using=tenant.home_region.db_alias, execute=True):
            append(tenant, 2)
    assert sent == []
    with tenant_context(tenant_a):
        SiemDestination.objects.filter(pk=disabled.pk).update(enabled=True)
    services._tried.clear()
    with django_capture_on_commit_callbacks(using=tenant_a.home_region.db_alias, execute=True):
        append(tenant_a, 1)
    assert sent == [services.KICK_TASK]


def test_a_hec_200_without_success_code_is_not_an_acknowledgement(
    tenant_a: Tenant, hec: Any, pki: Any, make_destination: Any, fast_retry: None
) -> None:
    destination = make_destination(tenant_a, SiemKind.SPLUNK_HEC, hec, pki)
    hec.fail_with = 200  # answers 200 with {"code": 9}
    assert deliver(tenant_a, destination).failed
    assert reload(tenant_a, destination).delivered_seq == 0
    assert "without success code" in reload(tenant_a, destination).last_error
