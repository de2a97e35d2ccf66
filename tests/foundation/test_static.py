"""The app serves its own static files (WhiteNoise): `make run` and containers need no proxy for them."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.templatetags.static import static
from django.test import Client


def test_console_stylesheet_is_served_by_the_app() -> None:
    files = sorted(p for p in (Path(settings.BASE_DIR) / "static").rglob("*.css"))
    assert files, "the console ships a stylesheet"
    path = files[0].relative_to(Path(settings.BASE_DIR) / "static").as_posix()
    response = Client().get(static(path))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == files[0].read_bytes()  # type: ignore[attr-defined]


def test_missing_static_file_is_404_not_500() -> None:
    assert Client().get(static("no/such/file.css")).status_code == 404
