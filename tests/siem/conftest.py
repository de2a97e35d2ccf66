"""Fixtures of the SIEM tests: certificates and real receivers on loopback (tests/siem/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.core.context import tenant_context
from apps.siem.models import SiemDestination, SiemKind
from apps.siem.services import START_BEGINNING, destination_create
from apps.tenants.models import Tenant
from tests.siem.helpers import HttpsReceiver, Pki, SyslogTlsListener, make_pki

HEC_TOKEN = "hec-token-0123456789abcdef"
WEBHOOK_SECRET = "webhook-secret-0123456789"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(Path(tmp_path_factory.mktemp("siem-pki")))


@pytest.fixture
def syslog(pki: Pki) -> Iterator[SyslogTlsListener]:
    listener = SyslogTlsListener(pki).start()
    yield listener
    listener.stop()


@pytest.fixture
def hec(pki: Pki) -> Iterator[HttpsReceiver]:
    receiver = HttpsReceiver(pki, mode="hec", secret=HEC_TOKEN).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def webhook(pki: Pki) -> Iterator[HttpsReceiver]:
    receiver = HttpsReceiver(pki, mode="webhook", secret=WEBHOOK_SECRET).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def fast_retry(settings: Any) -> None:
    """Failed batches retry after at most 10 ms (tests do not wait out the real backoff)."""
    settings.HUB_SIEM_RETRY_BASE_MS = 1
    settings.HUB_SIEM_RETRY_MAX_SECONDS = 0.01


def destination_for(
    tenant: Tenant, kind: str, target: Any, pki: Pki, *, name: str = "", **extra: Any
) -> SiemDestination:
    """A destination of `tenant` to one of the receivers, trusting the test CA, from the chain's start."""
    data: dict[str, Any] = {"name": name or kind, "kind": kind, "ca_bundle": pki.ca_pem, **extra}
    if kind == SiemKind.SYSLOG_TLS:
        data.update(host="127.0.0.1", port=target.port)
    else:
        data["url"] = target.url
    if kind == SiemKind.SPLUNK_HEC:
        data.setdefault("token", HEC_TOKEN)
    if kind == SiemKind.WEBHOOK:
        data.setdefault("hmac_secret", WEBHOOK_SECRET)
    destination = destination_create(tenant=tenant, data=data, start=START_BEGINNING)
    with tenant_context(tenant):
        return SiemDestination.objects.get(pk=destination.pk)


@pytest.fixture
def make_destination() -> Any:
    return destination_for
