"""The Content-Security-Policy in a real browser: console pages and the API docs work under it, and a
planted inline script is blocked (so the listener that the other browser tests rely on does fire)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_api_docs_render_from_our_static_files_under_the_policy(
    live_server: LiveServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Integration Hub API")
    expect(page.locator(".opblock").first).to_be_visible()
    assert requested and all(url.startswith(live_server.url) for url in requested), requested


def test_the_policy_blocks_an_injected_inline_script(
    live_server: LiveServer, new_page: Callable[[], Page], csp_violations: list[str]
) -> None:
    page = new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    expect(page.get_by_role("button", name="Continue")).to_be_visible()
    assert csp_violations == []
    # What an injected fragment would do: an inline script and an inline handler. Neither may run.
    page.evaluate(
        """() => {
        const s = document.createElement("script");
        s.textContent = "window.__pwned = 1";
        document.body.append(s);
        const d = document.createElement("div");
        d.innerHTML = '<img src="/static/none.png" onerror="window.__pwned=2">';
        document.body.append(d);
    }"""
    )
    page.wait_for_timeout(300)
    pwned: Any = page.evaluate("() => window.__pwned")
    assert pwned is None
    assert any("script-src" in v for v in csp_violations), csp_violations
    csp_violations.clear()  # expected here; new_page's check is for the other tests
