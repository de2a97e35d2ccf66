"""UI catalogs: complete (no untranslated or fuzzy entries), placeholders intact, current with the code."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ["de", "fr", "es", "ja"]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w+)\}")
SOURCE_DIRS = ("apps", "hub", "templates")  # where UI strings live (connectors/ is not UI)


def _catalog(path: Path) -> Catalog:
    with path.open("rb") as fh:
        return read_po(fh)


def _problems(catalog: Catalog) -> list[str]:
    problems = []
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {ids[0]!r}")
        if not all(strings):
            problems.append(f"untranslated: {ids[0]!r}")
            continue
        wanted = {m for pair in PLACEHOLDER.findall(str(ids[-1])) for m in pair if m}
        for text in strings:
            got = {m for pair in PLACEHOLDER.findall(str(text)) for m in pair if m}
            if got != wanted:
                problems.append(f"placeholders differ in {ids[0]!r}: {sorted(got)} != {sorted(wanted)}")
    return problems


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_is_complete(language: str) -> None:
    path = ROOT / "locale" / language / "LC_MESSAGES" / "django.po"
    assert path.exists(), f"missing catalog {path}"
    catalog = _catalog(path)
    assert len(catalog) > 50
    assert _problems(catalog) == []


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("xgettext") is None, reason="GNU gettext is installed by make test")
def test_catalogs_cover_every_string_in_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Extract the strings again into a copy: any new string shows up untranslated there.

    makemessages writes next to the sources it finds, so it runs in a scratch tree whose code folders link
    to the real ones and whose locale/ is a copy: the real catalogs are never touched.
    """
    for name in SOURCE_DIRS:
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    shutil.copytree(ROOT / "locale", tmp_path / "locale")
    monkeypatch.chdir(tmp_path)
    before = {p: p.read_bytes() for p in (ROOT / "locale").rglob("*.po")}
    with override_settings(LOCALE_PATHS=[tmp_path / "locale"]):
        call_command("makemessages", locale=LANGUAGES, symlinks=True, no_location=True, verbosity=0)
    assert {p: p.read_bytes() for p in (ROOT / "locale").rglob("*.po")} == before
    for language in LANGUAGES:
        problems = _problems(_catalog(tmp_path / "locale" / language / "LC_MESSAGES" / "django.po"))
        assert problems == [], f"{language}: run `make messages-update` and translate: {problems[:20]}"


def test_the_coverage_check_sees_a_missing_string(tmp_path: Path) -> None:
    """Guard for the guard: a catalog without one of the code's strings must be reported."""
    catalog = _catalog(ROOT / "locale" / "de" / "LC_MESSAGES" / "django.po")
    catalog.delete("Tenants & members")
    catalog.add("Tenants & members", "")
    assert "untranslated: 'Tenants & members'" in _problems(catalog)


def test_languages_offered() -> None:
    assert [code for code, _ in settings.LANGUAGES] == ["en", "de", "fr", "es", "ja"]
