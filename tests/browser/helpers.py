"""What the browser tests share besides fixtures: the default timeout and the CSP-violation reporter."""

from __future__ import annotations

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
