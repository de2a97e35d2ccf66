"""kb_import / kb_export: line-numbered errors, all-or-nothing, round trip."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.knowledge.models import Chunk, ChunkKind, KnowledgeBase, Status, Translation
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db


def line(**kw: Any) -> str:
    row = {"key": "a", "locale": "en", "region": None, "title": "A", "body": "# A\n\nText."}
    row["status"] = "published"
    return json.dumps({**row, **kw}, ensure_ascii=False)


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_import_creates_kb_publishes_and_indexes(tenant_a: Tenant, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        line(),
        line(locale="de", title="A (de)", status="draft"),
        line(region="EU", title="A (EU)", status="in_review"),
    )
    out = io.StringIO()
    call_command("kb_import", str(path), tenant="tenant-a", kb="Docs", index_now=True, stdout=out)
    assert "Imported 3 texts (1 published)" in out.getvalue()
    with tenant_context(tenant_a):
        kb = KnowledgeBase.objects.get(name="Docs")
        assert (kb.source_locale, kb.locales, kb.regions) == ("en", ["en", "de"], ["eu"])  # region codes
        statuses = {(t.locale, t.region): t.status for t in Translation.objects.all()}
        assert statuses == {
            ("en", ""): Status.PUBLISHED,
            ("de", ""): Status.DRAFT,
            ("en", "eu"): Status.IN_REVIEW,
        }
        assert Chunk.objects.filter(kind=ChunkKind.CONTENT).count() == 1
        assert AuditEvent.objects.filter(action="knowledge.published").count() == 1
    # Re-importing the same file changes nothing (no new revision, no new publish event).
    call_command("kb_import", str(path), tenant="tenant-a", kb="Docs", index_now=True, stdout=io.StringIO())
    with tenant_context(tenant_a):
        assert AuditEvent.objects.filter(action="knowledge.published").count() == 1


def test_bad_lines_are_reported_and_nothing_is_imported(tenant_a: Tenant, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        line(),
        "{not json",
        line(key="b", status="live"),
        json.dumps({"key": "c"}),
        line(key="Bad Key"),
    )
    with pytest.raises(CommandError) as exc:
        call_command("kb_import", str(path), tenant="tenant-a", kb="Docs", stdout=io.StringIO())
    message = str(exc.value)
    assert "line 2: not valid JSON" in message
    assert "line 3: unknown status 'live'" in message
    assert "line 4: missing locale, title, body" in message
    # Lines that parse but fail validation are reported too, and roll the whole file back.
    path = write(tmp_path, line(), line(key="Bad Key"), line(key="ok", locale="xx-invalid"))
    with pytest.raises(CommandError) as exc:
        call_command("kb_import", str(path), tenant="tenant-a", kb="Docs", stdout=io.StringIO())
    assert "line 2: key:" in str(exc.value) and "line 3: locale:" in str(exc.value)
    with tenant_context(tenant_a):
        assert not Translation.objects.exists()


def test_unknown_tenant_and_unreadable_file(tenant_a: Tenant, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="No tenant"):
        call_command("kb_import", str(tmp_path / "x.jsonl"), tenant="nope", kb="Docs")
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("kb_import", str(tmp_path / "x.jsonl"), tenant="tenant-a", kb="Docs")
    with pytest.raises(CommandError, match="No knowledge base"):
        call_command("kb_export", tenant="tenant-a", kb="Docs")


def test_export_round_trip(tenant_a: Tenant, tmp_path: Path) -> None:
    source = write(tmp_path, line(), line(locale="ja", title="エー", body="本文です。", status="draft"))
    call_command("kb_import", str(source), tenant="tenant-a", kb="Docs", index_now=True, stdout=io.StringIO())
    out = io.StringIO()
    call_command("kb_export", tenant="tenant-a", kb="Docs", stdout=out)
    exported = [json.loads(x) for x in out.getvalue().splitlines()]
    assert exported == [json.loads(x) for x in source.read_text(encoding="utf-8").splitlines()]
