"""Hostile XLIFF uploads: external entities (file and network), billion laughs, oversize, not XML, the wrong
namespace. Each is a clear 400 form error on the exchange page, nothing is stored, and no entity is ever
resolved, neither by the gate (defusedxml) nor by translate-toolkit's own parser behind it."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.test.utils import override_settings
from django.urls import reverse
from translate.storage.xliff import xlifffile

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase, Revision, XliffImport
from apps.tenants.models import Tenant
from tests.fixtures.auth import login_verified
from tests.knowledge.xliff_helpers import published_source

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("run_tasks")]

NS = "urn:oasis:names:tc:xliff:document:1.2"


@pytest.fixture
def source(tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any) -> Any:
    return published_source(tenant_a, kb, alice, reviewer)


@pytest.fixture
def hits() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records every request: an external entity must never reach it."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'<!ENTITY leak "LEAKED">')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def document(kb: KnowledgeBase, *, doctype: str = "", target: str = "Rückgabe", ns: str = NS) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{doctype}<xliff xmlns="{ns}" version="1.2">'
        f'<file original="knowledge-base/{kb.pk}/de" source-language="en" target-language="de" '
        f'datatype="plaintext"><body><trans-unit id="returns:title"><source>Returns</source>'
        f"<target>{target}</target></trans-unit></body></file></xliff>"
    ).encode()


def payloads(kb: KnowledgeBase, server: str) -> dict[str, bytes]:
    lol = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    return {
        "xxe-file": document(
            kb, doctype='<!DOCTYPE xliff [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', target="&xxe;"
        ),
        "xxe-network": document(
            kb, doctype=f'<!DOCTYPE xliff [<!ENTITY xxe SYSTEM "{server}/xxe">]>', target="&xxe;"
        ),
        "xxe-parameter": document(
            kb, doctype=f'<!DOCTYPE xliff [<!ENTITY % p SYSTEM "{server}/dtd"> %p;]>', target="&leak;"
        ),
        "external-dtd": document(kb, doctype=f'<!DOCTYPE xliff SYSTEM "{server}/external.dtd">'),
        "billion-laughs": document(kb, doctype=f"<!DOCTYPE xliff [{lol}]>", target="&lol9;"),
    }


def upload(client: Client, tenant: Tenant, kb: KnowledgeBase, data: bytes, name: str = "de.xlf") -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    path = reverse("knowledge:xliff", kwargs={"tenant_slug": tenant.slug, "kb_id": kb.pk})
    return client.post(
        path, {"file": SimpleUploadedFile(name, data, content_type="application/xml")}, follow=True
    )


def revisions(tenant: Tenant) -> int:
    with tenant_context(tenant):
        return Revision.objects.count()


def stored(tenant: Tenant) -> int:
    """Imports stored (a refused upload stores nothing, not even its file)."""
    with tenant_context(tenant):
        return XliffImport.all_tenants.count()


def test_entities_and_dtds_are_refused_and_never_resolved(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any, hits: Any
) -> None:
    server, seen = hits
    login_verified(client, alice)
    before = revisions(tenant_a)
    for name, data in payloads(kb, server).items():
        started = time.monotonic()
        response = upload(client, tenant_a, kb, data)
        assert response.status_code == 400, name
        page = response.content.decode()
        assert "declares a DTD or entities, which XLIFF files never need" in page, name
        assert "root:" not in page and "LEAKED" not in page and "lollol" not in page
        assert time.monotonic() - started < 5, name
    assert revisions(tenant_a) == before and stored(tenant_a) == 0
    assert seen == []


def test_translate_toolkits_parser_resolves_nothing_either(kb: KnowledgeBase, hits: Any) -> None:
    """Defence in depth: were the gate bypassed, the store behind it expands no entity and fetches nothing."""
    server, seen = hits
    for name, data in payloads(kb, server).items():
        try:
            store = xlifffile.parsestring(data)
        except Exception:  # noqa: S112 - refusing to parse is fine too
            continue
        text = "".join(str(u.target or "") for u in store.units)
        assert "root:" not in text and "LEAKED" not in text and "lollol" not in text, name
    assert seen == []


@override_settings(HUB_KNOWLEDGE_XLIFF_MAX_BYTES=2048)
def test_oversize_upload_is_refused_before_parsing(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    login_verified(client, alice)
    big = document(kb, target="x" * 4096)
    response = upload(client, tenant_a, kb, big)
    assert response.status_code == 400 and "The file is too large" in response.content.decode()
    assert stored(tenant_a) == 0
    assert upload(client, tenant_a, kb, document(kb)).status_code == 200
    assert stored(tenant_a) == 1


@override_settings(HUB_KNOWLEDGE_XLIFF_MAX_BYTES=2048)
def test_oversize_upload_stops_being_read_at_the_limit(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, alice: Any
) -> None:
    login_verified(client, alice)
    with mock.patch("apps.knowledge.xliff_views.xliff_import_queue") as service:
        response = upload(client, tenant_a, kb, b"<" * 200_000)
    assert response.status_code == 400 and "The file is too large" in response.content.decode()
    service.assert_not_called()  # refused by the upload handler, before the file was stored or read


def test_upload_needs_the_csrf_token(tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    login_verified(client, alice)
    assert upload(client, tenant_a, kb, document(kb)).status_code == 403
    path = reverse("knowledge:xliff", kwargs={"tenant_slug": tenant_a.slug, "kb_id": kb.pk})
    page = client.get(path).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        path,
        {"csrfmiddlewaretoken": token[1], "file": SimpleUploadedFile("de.xlf", document(kb))},
        follow=True,
    )
    assert response.status_code == 200 and "unchanged: 1." in response.content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"just some text", "This is not an XML file."),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "This is not an XML file."),
        (b"<xliff><file>", "This is not an XML file."),
        ("<?xml version='1.0' encoding='UTF-8'?><x>\udcff</x>", ""),
        (b"<xliff version='1.2'><file/></xliff>", "This is not an XLIFF 1.2 file"),
        (
            b"<xliff xmlns='urn:oasis:names:tc:xliff:document:2.0' version='2.0'/>",
            "This is not an XLIFF 1.2 file",
        ),
        (b"<xliff xmlns='urn:oasis:names:tc:xliff:document:1.1'/>", "This is not an XLIFF 1.2 file"),
        (b"<html xmlns='http://www.w3.org/1999/xhtml'><body/></html>", "This is not an XLIFF 1.2 file"),
        (f"<xliff xmlns='{NS}' version='1.2'/>".encode(), "exactly one &lt;file&gt; element"),
    ],
)
def test_not_xliff_is_a_form_error(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, alice: Any, data: Any, message: str
) -> None:
    login_verified(client, alice)
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
    response = upload(client, tenant_a, kb, raw)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert stored(tenant_a) == 0


def test_empty_and_missing_files_are_form_errors(
    client: Client, tenant_a: Tenant, kb: KnowledgeBase, alice: Any
) -> None:
    login_verified(client, alice)
    assert upload(client, tenant_a, kb, b"").status_code == 400
    path = reverse("knowledge:xliff", kwargs={"tenant_slug": tenant_a.slug, "kb_id": kb.pk})
    assert client.post(path, {}).status_code == 400
