"""What the browser tests share besides fixtures: the default timeout, the CSP-violation reporter and the
password sign-in."""

from __future__ import annotations

from playwright.sync_api import Page

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


def sign_in_with_sso(page: Page, base_url: str, tenant_slug: str, username: str, password: str) -> None:
    """Start at the tenant's single sign-on address and sign in at its identity provider's login form (the
    demo/test OpenID provider's: Username, Password, "Sign in"); the browser then follows the redirects."""
    page.goto(f"{base_url}/accounts/sso/t/{tenant_slug}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Sign in with a password on the two-step page: who first (home-realm discovery), then the password."""
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("E-mail or username").fill(username)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
