"""XLIFF exchange (apps/knowledge/xliff.py): what an export holds, the byte-stable round trip, translations
entering review, and per-unit errors (unknown, stale) that leave the rest of the file applied."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from lxml import etree

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.knowledge.models import KnowledgeBase, Revision, Status, Translation
from apps.knowledge.selectors import review_queue
from apps.knowledge.services import kb_create, translation_publish
from apps.knowledge.xliff import XLIFF_NS, kb_xliff_export, kb_xliff_import
from apps.tenants.models import Membership, Tenant
from tests.knowledge.xliff_helpers import (
    RETURNS_EN,
    RETURNS_JA,
    SHIPPING_EN,
    publish_text,
    published_source,
    translate,
    units,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(tenant_a: Tenant, kb: KnowledgeBase, alice: Any, reviewer: Any) -> dict[str, Translation]:
    return published_source(tenant_a, kb, alice, reviewer)


def export(tenant: Tenant, kb: KnowledgeBase, locale: str, actor: Any, region: str = "") -> bytes:
    with tenant_context(tenant):
        return kb_xliff_export(kb=kb, locale=locale, region=region, actor=actor)


def do_import(tenant: Tenant, kb: KnowledgeBase, data: bytes, actor: Any, name: str = "ja.xlf") -> Any:
    with tenant_context(tenant):
        return kb_xliff_import(kb=kb, data=data, filename=name, actor=actor)


def revision_count(tenant: Tenant) -> int:
    with tenant_context(tenant):
        return Revision.objects.count()


def test_export_is_xliff_12_with_stable_ids_sources_targets_and_notes(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    data = export(tenant_a, kb, "de", alice)
    root = etree.fromstring(data)
    assert root.tag == f"{{{XLIFF_NS}}}xliff" and root.get("version") == "1.2"
    (file,) = root.findall(f"{{{XLIFF_NS}}}file")
    assert file.get("original") == f"knowledge-base/{kb.pk}/de"
    assert (file.get("source-language"), file.get("target-language")) == ("en", "de")
    found = units(data)
    assert list(found) == [
        "returns:title",
        "returns:body",
        "returns:phrasing:1",
        "returns:phrasing:2",
        "shipping:title",
        "shipping:body",
    ]
    assert found["returns:body"].source == RETURNS_EN  # Markdown intact, one unit
    assert found["returns:title"].target == "Rückgabe"
    assert found["returns:phrasing:1"].target == "wie schicke ich etwas zurück"
    assert found["returns:phrasing:2"].target is None and found["shipping:body"].target is None
    state = found["returns:title"].xmlelement.find(f"{{{XLIFF_NS}}}target").get("state")
    assert state == "final"  # published German
    assert "Article returns; source revision 1; translation: published" in found["returns:title"].getnotes()
    assert "not translated yet" in found["shipping:body"].getnotes()
    assert found["returns:title"].xmlelement.get("maxwidth") == "300"


def test_needs_update_is_in_the_note_and_the_target_state(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any, reviewer: Any
) -> None:
    publish_text(
        tenant_a,
        kb,
        key="returns",
        locale="en",
        author=alice,
        reviewer=reviewer,
        title="Returns and refunds",
        body=RETURNS_EN,
        phrasings=["how do I send something back", "refund for a sofa"],
    )
    unit = units(export(tenant_a, kb, "de", alice))["returns:title"]
    assert unit.source == "Returns and refunds" and unit.target == "Rückgabe"
    assert unit.xmlelement.find(f"{{{XLIFF_NS}}}target").get("state") == "needs-review-translation"
    assert "source revision 2" in unit.getnotes() and "needs update" in unit.getnotes()


def test_unchanged_round_trip_creates_nothing_and_exports_the_same_bytes(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    first = export(tenant_a, kb, "de", alice)
    before = revision_count(tenant_a)
    result = do_import(tenant_a, kb, first, alice, "de.xlf")
    assert (result.created, result.unchanged, result.errors) == (0, 2, [])  # returns, shipping
    assert revision_count(tenant_a) == before
    with tenant_context(tenant_a):
        assert Translation.objects.get(article__key="returns", locale="de").status == Status.PUBLISHED
    assert export(tenant_a, kb, "de", alice) == first
    # A file with no targets at all (fresh export for a new locale) creates nothing either.
    assert do_import(tenant_a, kb, export(tenant_a, kb, "ja", alice), alice).created == 0
    assert revision_count(tenant_a) == before


def test_translated_file_enters_review_then_comes_back_as_targets(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any, editor: Any, reviewer: Any
) -> None:
    exported = export(tenant_a, kb, "ja", editor)
    filled = translate(
        exported,
        {
            "returns:title": "返品",
            "returns:body": RETURNS_JA,
            "returns:phrasing:1": "返品の方法は?",
            "shipping:title": "配送",
            "shipping:body": "荷物は3日で届きます。\n\n[追跡](https://track.example.com/)をご覧ください。",
        },
    )
    result = do_import(tenant_a, kb, filled, editor, "help-center.ja.xlf")
    assert (result.created, result.unchanged, result.errors) == (2, 0, [])
    with tenant_context(tenant_a):
        ja = Translation.objects.get(article__key="returns", locale="ja")
        assert (ja.title, ja.body, ja.phrasings, ja.status) == (
            "返品",
            RETURNS_JA,
            ["返品の方法は?"],
            Status.IN_REVIEW,
        )
        revision = ja.revisions.get()
        assert (revision.note, revision.author_id) == ("XLIFF import: help-center.ja.xlf", editor.pk)
        assert ja.source_revision == source["returns"].published_revision
        assert {t.article.key for t in review_queue(locales=["ja"])} == {"returns", "shipping"}
        event = AuditEvent.objects.get(action="knowledge.xliff_imported")
        assert event.actor_id == editor.pk
        assert event.changes == {
            "file": "help-center.ja.xlf",
            "locale": "ja",
            "region": "",
            "created": 2,
            "unchanged": 0,
            "errors": 0,
        }
        # Importing the same file again is a no-op: the texts are already what it says.
        assert kb_xliff_import(kb=kb, data=filled, filename="again.xlf", actor=editor).unchanged == 2
        assert ja.revisions.count() == 1
        for text in Translation.objects.filter(locale="ja"):
            translation_publish(translation=text, actor=reviewer)
    again = units(export(tenant_a, kb, "ja", editor))
    assert again["returns:body"].target == RETURNS_JA  # code block, links, list, table byte for byte
    assert (
        again["returns:phrasing:1"].target == "返品の方法は?" and again["returns:phrasing:2"].target is None
    )
    assert again["returns:title"].xmlelement.find(f"{{{XLIFF_NS}}}target").get("state") == "final"
    # Published texts round-trip byte-stably too.
    assert export(tenant_a, kb, "ja", editor) == export(tenant_a, kb, "ja", editor)
    assert do_import(tenant_a, kb, export(tenant_a, kb, "ja", editor), editor).created == 0


def test_unit_errors_skip_their_text_and_apply_the_others(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any, reviewer: Any
) -> None:
    exported = export(tenant_a, kb, "fr", alice)
    filled = translate(
        exported,
        {
            "returns:title": "Retours",
            "returns:body": "# Retours\n\n30 jours.",
            "shipping:title": "Livraison",
            "shipping:body": "En 3 jours.",
        },
    )
    # The English returns body changes after the export: its file is stale for that article.
    publish_text(
        tenant_a,
        kb,
        key="returns",
        locale="en",
        author=alice,
        reviewer=reviewer,
        title="Returns",
        body=RETURNS_EN + "\nNew rule.",
        phrasings=["how do I send something back", "refund for a sofa"],
    )
    # A unit the hub never wrote, and one of an article that does not exist.
    filled = filled.replace(
        b"</body>",
        b'<trans-unit id="made-up"><source>x</source><target>y</target></trans-unit>'
        b'<trans-unit id="nope:title"><source>x</source><target>y</target></trans-unit></body>',
    )
    result = do_import(tenant_a, kb, filled, alice, "fr.xlf")
    assert (result.created, result.unchanged) == (1, 0)
    problems = {e.unit_id: e for e in result.errors}
    assert set(problems) == {"returns:body", "made-up", "nope:title"}
    assert "changed since this file was exported" in problems["returns:body"].message
    assert problems["returns:body"].line and problems["returns:body"].line > 1
    assert "no published article nope" in problems["nope:title"].message
    with tenant_context(tenant_a):
        # Nothing half-applied: the returns title was fine, but its text has a stale unit, so it waits.
        assert not Translation.objects.filter(article__key="returns", locale="fr").exists()
        shipping = Translation.objects.get(article__key="shipping", locale="fr")
        assert (shipping.title, shipping.body, shipping.status) == (
            "Livraison",
            "En 3 jours.",
            Status.IN_REVIEW,
        )
        assert AuditEvent.objects.get(action="knowledge.xliff_imported").changes["errors"] == 3


def test_refused_values_are_unit_errors(tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any) -> None:
    filled = translate(
        export(tenant_a, kb, "es", alice),
        {
            "returns:title": "Devoluciones",
            "returns:body": '<script>alert("x")</script>',
            "shipping:title": "Envío",  # a new text with its body untranslated
        },
    )
    result = do_import(tenant_a, kb, filled, alice)
    assert result.created == 0 and [e.unit_id for e in result.errors] == ["returns:body", "shipping:body"]
    assert "Write Markdown, not HTML" in result.errors[0].message
    assert "does not exist yet in es: translate its title and body" in result.errors[1].message
    result = do_import(tenant_a, kb, translate(filled, {"shipping:body": "En 3 días."}), alice)
    assert result.created == 1 and [e.unit_id for e in result.errors] == ["returns:body"]
    with tenant_context(tenant_a):
        assert list(Translation.objects.filter(locale="es").values_list("article__key", flat=True)) == [
            "shipping"
        ]
    # An existing text: a refused phrasing is the phrasing unit's error, and the German text stays as it was.
    german = translate(
        export(tenant_a, kb, "de", alice), {"returns:phrasing:2": "wann kommt mein Geld " * 12}
    )
    result = do_import(tenant_a, kb, german, alice)
    assert (result.created, [e.unit_id for e in result.errors]) == (0, ["returns:phrasing:2"])
    assert "use at most 200 characters" in result.errors[0].message
    with tenant_context(tenant_a):
        assert Translation.objects.get(article__key="returns", locale="de").phrasings == [
            "wie schicke ich etwas zurück"
        ]


def test_files_of_another_target_or_base_are_refused(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    data = export(tenant_a, kb, "de", alice)
    with tenant_context(tenant_a):
        other = kb_create(
            tenant=tenant_a, name="Other", source_locale="en", enabled_locales=["de"], actor=alice
        )
    cases = {
        "not exported from this knowledge base": (other, data),
        "source language is fr": (kb, data.replace(b'source-language="en"', b'source-language="fr"')),
        "is not the locale it was exported for": (
            kb,
            data.replace(b'target-language="de"', b'target-language="ja"'),
        ),
        "target locales": (
            kb,
            data.replace(f"/{kb.pk}/de".encode(), f"/{kb.pk}/en".encode()).replace(
                b'target-language="de"', b'target-language="en"'
            ),
        ),
    }
    for expected, (base, payload) in cases.items():
        with pytest.raises(ValidationFailed) as exc:
            do_import(tenant_a, base, payload, alice)
        assert expected in exc.value.errors["file"][0], expected
    assert revision_count(tenant_a) == 3


def test_localization_editor_exchanges_only_their_locales(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any, editor: Any
) -> None:
    Membership.objects.filter(user=editor, tenant=tenant_a).update(locales=["de"], regions=["eu"])
    data = export(tenant_a, kb, "de", editor)
    with pytest.raises(PermissionDenied):
        export(tenant_a, kb, "ja", editor)
    with pytest.raises(PermissionDenied):
        export(tenant_a, kb, "de", editor, region="us")
    with pytest.raises(ValidationFailed) as exc:
        do_import(tenant_a, kb, export(tenant_a, kb, "ja", alice), editor)
    assert "You may not edit texts in ja" in exc.value.errors["file"][0]
    assert do_import(tenant_a, kb, data, editor).unchanged == 2


def test_regional_variant_file(tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any) -> None:
    data = export(tenant_a, kb, "de", alice, region="EU")
    assert f'original="knowledge-base/{kb.pk}/de/eu"'.encode() in data
    assert units(data)["returns:title"].target is None  # the EU variant does not exist yet
    result = do_import(tenant_a, kb, translate(data, {"returns:title": "Rückgabe (EU)"}), alice)
    assert (result.created, [e.unit_id for e in result.errors]) == (0, ["returns:body"])
    filled = translate(data, {"returns:title": "Rückgabe (EU)", "returns:body": "EU: 14 Tage."})
    result = do_import(tenant_a, kb, filled, alice)
    assert result.created == 1
    with tenant_context(tenant_a):
        variant = Translation.objects.get(article__key="returns", locale="de", region="eu")
        generic = Translation.objects.get(article__key="returns", locale="de", region="")
        assert (variant.title, variant.body, variant.status) == (
            "Rückgabe (EU)",
            "EU: 14 Tage.",
            Status.IN_REVIEW,
        )
        assert generic.title == "Rückgabe" and generic.status == Status.PUBLISHED
    assert "shipping:title" in units(data) and units(data)["shipping:body"].source == SHIPPING_EN
    with pytest.raises(ValidationFailed):
        export(tenant_a, kb, "de", alice, region="apac")
    with pytest.raises(ValidationFailed):
        export(tenant_a, kb, "en", alice)


def test_segmented_targets_of_cat_tools_are_read_whole(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    """Trados and Okapi-based tools (OmegaT) return sentence segments as <seg-source>/<mrk mtype="seg">."""
    data = export(tenant_a, kb, "es", alice)
    segmented = data.replace(
        b"<source>Shipping</source>",
        b'<source>Shipping</source><seg-source><mrk mtype="seg" mid="1">Shipping</mrk></seg-source>'
        b'<target state="translated"><mrk mtype="seg" mid="1">Env\xc3\xado</mrk></target>',
    ).replace(
        f"<source>{SHIPPING_EN}</source>".encode(),
        f"<source>{SHIPPING_EN}</source>".encode()
        + b'<target><mrk mtype="seg" mid="1">Llega en 3 d\xc3\xadas.</mrk>\n\n'
        + b'<mrk mtype="seg" mid="2">Vea [seguimiento](https://track.example.com/).</mrk></target>',
    )
    assert segmented.count(b"<mrk") == 4
    result = do_import(tenant_a, kb, segmented, alice)
    assert (result.created, result.errors) == (1, [])
    with tenant_context(tenant_a):
        es = Translation.objects.get(article__key="shipping", locale="es")
        assert (es.title, es.body) == (
            "Envío",
            "Llega en 3 días.\n\nVea [seguimiento](https://track.example.com/).",
        )


def test_line_breaks_survive_a_tool_that_drops_xml_space(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    filled = translate(
        export(tenant_a, kb, "ja", alice),
        {"returns:title": "返品", "returns:body": RETURNS_JA},
    ).replace(b' xml:space="preserve"', b"")
    assert b"xml:space" not in filled
    result = do_import(tenant_a, kb, filled, alice)
    assert (result.created, result.errors) == (1, [])
    with tenant_context(tenant_a):
        assert Translation.objects.get(article__key="returns", locale="ja").body == RETURNS_JA


def test_other_encodings_and_line_ends_of_cat_tools(
    tenant_a: Tenant, kb: KnowledgeBase, source: Any, alice: Any
) -> None:
    data = export(tenant_a, kb, "de", alice)
    utf16 = data.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    for variant in (b"\xef\xbb\xbf" + data, utf16):
        result = do_import(tenant_a, kb, variant, alice)
        assert (result.created, result.unchanged, result.errors) == (0, 2, [])
    windows = translate(data, {"returns:body": "# Rückgabe\n\nIn 30 Tagen."}).replace(
        b"\n\nIn 30", b"&#13;\n&#13;\nIn 30"
    )
    assert do_import(tenant_a, kb, windows, alice).created == 1
    with tenant_context(tenant_a):
        assert (
            Translation.objects.get(article__key="returns", locale="de").body == "# Rückgabe\n\nIn 30 Tagen."
        )
