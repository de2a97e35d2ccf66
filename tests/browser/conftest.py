"""Browser fixtures: one headless Debian Chromium per session, a fresh context (cookies, storage) per test.

`make test` installs /usr/bin/chromium when it is missing; Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.browser.helpers import REPORT_CSP_VIOLATIONS, TIMEOUT_MS

# Playwright's sync API runs an event loop in the test thread; Django would otherwise refuse ORM calls there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (make test installs Debian's chromium)")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    browser = playwright_instance.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def csp_violations() -> list[str]:
    """Every CSP violation seen by any page of the test (checked empty when the test ends)."""
    return []


@pytest.fixture
def new_page(browser: Browser, csp_violations: list[str]) -> Iterator[Callable[[], Page]]:
    """Open pages in fresh browser contexts (one person each); all are closed after the test, which fails if
    any page broke the Content-Security-Policy (a blocked script or style is a broken page)."""
    contexts: list[BrowserContext] = []

    def open_page() -> Page:
        context = browser.new_context(locale="en-US", timezone_id="UTC")
        context.set_default_timeout(TIMEOUT_MS)
        context.expose_binding("__hubCspViolation", lambda source, text: csp_violations.append(text))
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        contexts.append(context)
        return context.new_page()

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()
    assert csp_violations == [], "the Content-Security-Policy blocked something on a console page"


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    return new_page()
