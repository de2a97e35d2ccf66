"""What article text may contain, decided in one place.

Article bodies are stored as Markdown, and the hub sanitises them on the way in, so every reader of the
database (console, chunker, chat, exports, a tenant's own web widget) gets inert text:

- vendor HTML (ServiceNow, Salesforce) goes through `html_sanitize` (nh3, the Rust `ammonia` sanitiser, with
  the allow-list below) before it becomes Markdown, and text that merely looks like a tag (an entity-encoded
  `&lt;script&gt;`) is backslash-escaped in the Markdown instead of being decoded into a real tag;
- every body written through `translation_save` (console editor, JSON-lines import, vendor import, API) is
  checked by `markdown_problems`: raw HTML and links to anything but http(s)/mailto/relative URLs are
  refused with a form error, so a body never stores markup a Markdown renderer would pass through;
- the console shows bodies as escaped text (`<pre>`), never rendered;
- the chat API answers in plain text (`text_plain`): no markup from the knowledge base or a language model
  ever reaches a channel;
- the public help center (issue 21) renders published bodies with `markdown_html`: raw HTML off in the
  parser, then the same nh3 allow-list as vendor HTML: even a body stored before these checks renders inert.
"""

from __future__ import annotations

import html
import re
from functools import cache

import nh3
from markdown_it import MarkdownIt

#: Vendor HTML elements that carry structure or emphasis Markdown can express; everything else is unwrapped
#: (its text kept) or, for the CLEAN_CONTENT_TAGS, dropped with its content.
ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1", "h2", "h3",
        "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "samp", "span", "strong",
        "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "td": {"colspan"},
    "th": {"colspan"},
}
#: Link and image schemes an article may use (relative URLs stay allowed; the importer drops them later).
URL_SCHEMES = frozenset({"http", "https", "mailto"})
#: Elements whose whole content goes, not just the tag: code, foreign content and embedded documents.
CLEAN_CONTENT_TAGS = frozenset(
    {
        "script",
        "style",
        "iframe",
        "object",
        "embed",
        "svg",
        "math",
        "template",
        "noscript",
        "frame",
        "frameset",
    }
)
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def html_sanitize(markup: str) -> str:
    """Reduce untrusted HTML to the allow-list, so no script, handler, frame or unsafe URL survives."""
    return nh3.clean(
        markup or "",
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        clean_content_tags=set(CLEAN_CONTENT_TAGS),
        strip_comments=True,
        link_rel=None,
    )


def markdown_escape_tags(text: str) -> str:
    """Backslash-escape each `<` that would open a tag: text that reads like HTML stays text in Markdown."""
    return _TAG_START.sub(r"\\<", text)


@cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark")  # raw HTML on, as most renderers have it: the check must see what they see
    md.validateLink = lambda url: True  # type: ignore[method-assign]  # report bad links instead of letting the parser hide them as text
    return md


@cache
def _renderer() -> MarkdownIt:
    # Raw HTML off: a tag in a body renders as text. The parser's own link check (no javascript:, vbscript:,
    # file: or non-image data: URLs) stays on.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_html(body: str) -> str:
    """Render a Markdown body as HTML safe to put in a page: parsed without raw HTML, then sanitised."""
    return html_sanitize(_renderer().render(body or ""))


def markdown_problems(body: str) -> list[str]:
    """What in a Markdown body a renderer would turn into live markup: raw HTML or an unsafe link."""
    problems: list[str] = []
    tokens = _parser().parse(body or "")
    stack = list(tokens)
    while stack:
        token = stack.pop(0)
        if token.type in ("html_block", "html_inline"):
            problems.append("html:" + token.content.strip()[:40])
        for name in ("href", "src"):
            url = str(token.attrGet(name) or "").strip()
            match = _SCHEME.match(url)
            if match and match.group(1).lower() not in URL_SCHEMES:
                problems.append("url:" + match.group(1).lower())
        stack[0:0] = token.children or []
    return problems


def text_plain(text: str) -> str:
    """Remove every tag (again while decoding entities uncovers new ones), so nothing renders as HTML."""
    for _round in range(5):
        cleaned = html.unescape(
            nh3.clean(
                text,
                tags=set(),
                attributes={},
                clean_content_tags=set(CLEAN_CONTENT_TAGS),
                strip_comments=True,
                link_rel=None,
            )
        )
        if cleaned == text:
            return text
        text = cleaned
    return _TAG_START.sub("\u2039", text)  # still changing: no `<` may open a tag
