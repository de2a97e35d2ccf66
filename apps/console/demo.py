"""The demo data set used by `make run` and `seed_demo`. Idempotent: re-running refreshes, never duplicates.

The console, the top app, composes it: each app seeds its own part in its `demo` module, and only an app above
all of them may call every one (tenants, policies, integrations, knowledge, chat).
"""

from __future__ import annotations

from typing import Any

from apps.accounts.demo import seed_demo_sso
from apps.chat.demo import seed_demo_channels, seed_demo_platform_channels
from apps.chat.demo_insights import seed_demo_insights
from apps.integrations.conf import simulators_state_dir
from apps.integrations.demo import seed_demo_connections
from apps.knowledge.demo import seed_demo_knowledge
from apps.policies.services import policy_apply_preset
from apps.tenants.demo import seed_demo_tenants, seed_demo_users
from connectors import simulators


def seed_demo() -> dict[str, Any]:
    """Create the demo tenants, one user per role and an operator; return what a person needs to log in."""
    tenants = seed_demo_tenants()
    # The demo shows the two ends of the data policies: a strict EU tenant and a lenient US one.
    for slug, preset in (("acme", "strict"), ("globex", "lenient")):
        if slug in tenants:
            policy_apply_preset(tenant=tenants[slug], preset=preset)
    users = seed_demo_users(tenants)
    # One connection per running simulator for each tenant; skipped with a logged line when they are down.
    connections = seed_demo_connections(list(tenants.values()))
    # The multilingual help-center knowledge base, indexed in-process (no worker needed).
    knowledge = seed_demo_knowledge(list(tenants.values()))
    # A web channel per tenant with an API key to try the chat API with (after the KB and connections).
    api_keys = seed_demo_channels(list(tenants.values()))
    # Issue 21: answered, rated, handed-off and unanswered questions in five locales for the insights pages.
    seed_demo_insights(list(tenants.values()))
    # Issue 17: the widget's key and origins, and a WhatsApp, Slack, Teams and SMS channel per tenant on the
    # platform simulators (skipped, with a logged line, while they are down).
    state = simulators.status(simulators_state_dir())
    channels = seed_demo_platform_channels(
        list(tenants.values()), simulators=state["simulators"] if state["running"] else {}
    )
    # Issue 19: globex signs in through the demo OpenID provider (skipped, logged, while it is down).
    sso = seed_demo_sso(tenants, simulators=state["simulators"] if state["running"] else {})
    return {
        "console_url": "/",
        "sso": sso,
        "connections": connections,
        "channels": channels,
        "knowledge": knowledge,
        "users": users,
        "tenants": [
            {"slug": t.slug, "name": t.name, "region": t.region_code, "api_keys": api_keys.get(t.slug, [])}
            for t in tenants.values()
        ],
    }
