"""Article bodies hold no live markup: the console editor refuses raw HTML and unsafe links (the row is left
as it was), and `text_plain` leaves nothing a browser would parse as a tag (apps/knowledge/content.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from markdown_it import MarkdownIt

from apps.core.context import tenant_context
from apps.knowledge.content import html_sanitize, markdown_problems, text_plain
from apps.knowledge.models import KnowledgeBase, Revision, Translation
from apps.tenants.models import Tenant
from tests.knowledge.helpers import DE, editor_url
from tests.knowledge.markup import live_markup

pytestmark = pytest.mark.django_db

#: Markdown an editor (or a stolen editor session) types to plant script in every page that renders it.
ATTACKS = {
    "script": "Hi <script>alert(1)</script>",
    "img onerror": 'Look <img src="x" onerror="alert(1)">',
    "iframe": "<iframe src='https://evil.example'></iframe>",
    "svg onload": "<svg onload=alert(1)></svg>",
    "html block": "<div onclick='alert(1)'>\nclick\n</div>",
    "comment": "<!-- <script>alert(1)</script> -->",
    "javascript link": "[reset](javascript:alert(document.cookie))",
    "entity-hidden javascript link": "[reset](&#106;avascript:alert(1))",
    "javascript autolink": "<javascript:alert(1)>",
    "data link": "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "data image": "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "vbscript link": "[x](VBScript:msgbox)",
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_editor_refuses_live_markup_and_keeps_the_row(
    alice_client: Client,
    tenant_a: Tenant,
    kb: KnowledgeBase,
    texts: Any,
    attack: str,
) -> None:
    with tenant_context(tenant_a):
        before = Translation.objects.get(pk=texts["de"].pk)
        revisions = Revision.objects.count()
    response = alice_client.post(
        editor_url(tenant_a, kb, "de"), {"title": "Rückgabe", "body": f"{DE}\n\n{attack}\n", "save": "1"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Write Markdown, not HTML" in page or "Links may only use http, https or mailto" in page
    assert live_markup(page, allow_static_scripts=True) == []  # the error names the markup, escaped
    with tenant_context(tenant_a):
        after = Translation.objects.get(pk=texts["de"].pk)
        assert (after.body, after.status) == (before.body, before.status)
        assert Revision.objects.count() == revisions


def test_markup_written_as_text_is_saved(
    alice_client: Client,
    tenant_a: Tenant,
    kb: KnowledgeBase,
    texts: Any,
) -> None:
    body = (
        DE + "\n\nPress `<Enter>`; a < b; \\<b> stays text; [help](https://help.example.com) and [faq](/faq)."
    )
    response = alice_client.post(
        editor_url(tenant_a, kb, "de"), {"title": "Rückgabe", "body": body, "save": "1"}
    )
    assert response.status_code == 302
    with tenant_context(tenant_a):
        assert Translation.objects.get(pk=texts["de"].pk).body == body
    assert live_markup(MarkdownIt("commonmark").render(body)) == []


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_every_attack_is_a_markdown_problem(attack: str) -> None:
    assert markdown_problems(attack)
    # Proof that each would be live in a CommonMark renderer with HTML on (most widgets), were it stored.
    md = MarkdownIt("commonmark")
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    assert live_markup(md.render(attack)) or "<!--" in md.render(attack)


def test_html_sanitize_keeps_structure_and_drops_everything_active() -> None:
    dirty = (
        '<h2 style="x">T</h2><p onclick="a()">p <b>b</b> '
        '<a href="https://ok.example/x" target="_blank">ok</a>'
        '<a href="javascript:alert(1)">js</a></p><svg><script>alert(1)</script></svg><iframe></iframe>'
        '<img src="https://ok.example/i.png" onerror="alert(1)" alt="i"><object data="x"></object>'
    )
    assert html_sanitize(dirty) == (
        '<h2>T</h2><p>p <b>b</b> <a href="https://ok.example/x">ok</a><a>js</a></p>'
        '<img src="https://ok.example/i.png" alt="i">'
    )


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        (
            "Plain **Markdown** stays [1]\n(From “Returns”.)",
            "Plain **Markdown** stays [1]\n(From “Returns”.)",
        ),
        ("a < b and AT&T, 3 > 2", "a < b and AT&T, 3 > 2"),
        ("Hi <script>alert(1)</script><b>there</b>", "Hi there"),
        ("&lt;img src=x onerror=alert(1)&gt;x", "x"),
        ("&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;ok", "ok"),
        ("<svg onload=alert(1)>svg</svg><iframe>f</iframe>", ""),
    ],
)
def test_text_plain_leaves_nothing_a_browser_parses_as_a_tag(text: str, plain: str) -> None:
    assert text_plain(text) == plain
    assert live_markup(text_plain(text)) == []
    assert text_plain(plain) == plain  # idempotent


def test_json_lines_import_refuses_raw_html_and_imports_nothing(
    tenant_a: Tenant, kb: KnowledgeBase, alice: Any
) -> None:
    import json

    from apps.core.errors import ValidationFailed
    from apps.knowledge.services import kb_import

    good = {"key": "ok", "locale": "en", "title": "Fine", "body": "Plain text.", "status": "published"}
    bad = good | {"key": "bad", "body": "Hi <img src=x onerror=alert(1)>"}
    with tenant_context(tenant_a), pytest.raises(ValidationFailed) as raised:
        kb_import(kb=kb, lines=[json.dumps(good), json.dumps(bad)], actor=alice)
    assert any(m.startswith("line 2: body: Write Markdown, not HTML") for m in raised.value.errors["lines"])
    with tenant_context(tenant_a):
        assert not Translation.objects.filter(article__kb=kb).exists()
