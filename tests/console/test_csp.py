"""Content-Security-Policy (django-csp): every console page carries a strict policy, and no template holds
code the policy would block (so the policy can stay strict: inline code would be the injection vector)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from apps.tenants.models import Tenant
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = [ROOT / "templates", *sorted((ROOT / "apps").glob("*/templates"))]
#: What a strict CSP blocks in markup: inline <script> bodies, on*= handlers, javascript: URLs, <style>
#: elements and style= attributes (style-src 'self' has no 'unsafe-inline').
INLINE_CODE = {
    "inline <script>": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "on*= handler": re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE | re.DOTALL),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "<style> element": re.compile(r"<style[\s>]", re.IGNORECASE),
    "style= attribute": re.compile(r"<[^>]*\sstyle\s*=", re.IGNORECASE | re.DOTALL),
}


def policy(response: Any) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def assert_strict(response: Any) -> None:
    directives = policy(response)
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'self'"] and directives["form-action"] == ["'self'"]
    header = response["Content-Security-Policy"]
    assert "unsafe-inline" not in header and "unsafe-eval" not in header and "*" not in header


def test_console_pages_carry_a_strict_policy(client: Client, alice: Any, tenant_a: Tenant) -> None:
    login_page = client.get("/accounts/login/")
    assert login_page.status_code == 200
    assert_strict(login_page)
    login_verified(client, alice)
    for url in (
        "/",
        f"/t/{tenant_a.slug}/",
        f"/t/{tenant_a.slug}/knowledge/",
        f"/t/{tenant_a.slug}/dashboard/",
    ):
        response = client.get(url, follow=True)
        assert response.status_code == 200, url
        assert_strict(response)
    assert_strict(client.get("/t/no-such-tenant/"))  # error pages too
    assert_strict(client.get("/api/docs/"))


def test_templates_hold_no_code_the_policy_would_block() -> None:
    found = []
    for directory in TEMPLATE_DIRS:
        for template in sorted(directory.rglob("*.html")):
            text = template.read_text()
            for what, pattern in INLINE_CODE.items():
                for match in pattern.finditer(text):
                    line = text.count("\n", 0, match.start()) + 1
                    found.append(f"{template.relative_to(ROOT)}:{line}: {what}")
    assert found == []
    assert len([t for d in TEMPLATE_DIRS for t in d.rglob("*.html")]) > 50  # the scan saw the templates


def test_htmx_is_configured_for_the_policy(client: Client) -> None:
    """htmx would otherwise inject an inline <style> and evaluate hx-vars/hx-on code (blocked by the CSP)."""
    html = client.get("/accounts/login/").content.decode()
    assert '"includeIndicatorStyles": false' in html and '"allowEval": false' in html
    assert settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["script-src"] == ["'self'"]
