"""Find live markup in an HTML document the way a browser would see it (elements and attributes, not text)."""

from __future__ import annotations

from html.parser import HTMLParser

DANGEROUS_TAGS = frozenset({"script", "iframe", "frame", "svg", "math", "object", "embed", "base", "form"})


class _Finder(HTMLParser):
    def __init__(self, *, allow_static_scripts: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.allow_static_scripts = allow_static_scripts
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        own_script = tag == "script" and str(values.get("src") or "").startswith("/static/")
        if tag in DANGEROUS_TAGS and not (own_script and self.allow_static_scripts) and tag != "form":
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            url = (value or "").strip().lower()
            if name.startswith("on"):
                self.found.append(f"{tag}[{name}]")
            elif name in {"href", "src", "action", "formaction", "xlink:href"} and url.startswith(
                ("javascript:", "data:", "vbscript:")
            ):
                self.found.append(f"{tag}[{name}={url[:20]}]")


def live_markup(html: str, *, allow_static_scripts: bool = False) -> list[str]:
    """Elements and attributes in `html` that run code or load foreign content (our own /static/ scripts
    allowed when asked): empty for inert content."""
    finder = _Finder(allow_static_scripts=allow_static_scripts)
    finder.feed(html)
    finder.close()
    return finder.found
