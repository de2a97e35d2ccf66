"""What the browser tests share besides fixtures: the default timeout and the CSP-violation reporter."""

from __future__ import annotations

from typing import Any

# Generous for a cold Chromium on a busy machine, short enough that a broken page fails fast.
TIMEOUT_MS = 15_000

# Reports every Content-Security-Policy violation of every page (and frame) to the test: an init script runs
# before the page's own scripts and is not subject to the page's policy.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__hubCspViolation(`${event.effectiveDirective} blocked ${event.blockedURI || "inline"} `
    + `at ${event.sourceFile || document.location.pathname}:${event.lineNumber}`);
}, true);
"""


def sign_in_with_sso(page: Any, base_url: str, tenant_slug: str, username: str, password: str) -> None:
    """Start at the tenant's single sign-on address and sign in at its identity provider's login form (the
    demo/test OpenID provider's: Username, Password, "Sign in"); the browser then follows the redirects."""
    page.goto(f"{base_url}/accounts/sso/t/{tenant_slug}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
