"""Write hub-dashboard.json, the hub's Grafana dashboard: `python deploy/grafana/build_dashboard.py`.

The dashboard is generated so every panel follows the same conventions (datasource variable, label filters,
units) and a change is one line here; tests/deploy checks the committed JSON matches this script's output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("hub-dashboard.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
CHAT = 'tenant=~"$tenant", region=~"$region", channel=~"$channel"'
CHAT_NO_TENANT = 'region=~"$region", channel=~"$channel"'
SYNC = 'tenant=~"$tenant", connector=~"$connector"'
# Issue 21 (seed 004): the chat by conversation language; `locale` is one of the tenant's configured languages
# or "other" (apps/observability/metrics.py, locale_label).
LANG = f'{CHAT}, locale=~"$locale"'
LANG_NO_TENANT = f'{CHAT_NO_TENANT}, locale=~"$locale"'

_panels: list[dict[str, Any]] = []
_y = 0
_x = 0
_row_height = 0


def row(title: str) -> None:
    """Start a new dashboard row (a full-width header) below everything placed so far."""
    global _y, _x, _row_height
    _y += _row_height
    _panels.append(
        {
            "id": len(_panels) + 1,
            "type": "row",
            "title": title,
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": _y},
            "panels": [],
        }
    )
    _y += 1
    _x = 0
    _row_height = 0


def panel(
    title: str,
    targets: list[tuple[str, str]],
    *,
    kind: str = "timeseries",
    unit: str = "short",
    width: int = 8,
    height: int = 8,
    description: str = "",
    thresholds: list[tuple[float | None, str]] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
    instant: bool = False,
) -> None:
    """Place a panel in the current row, wrapping to a new line when the row is full."""
    global _x, _y, _row_height
    if _x + width > 24:
        _y += _row_height
        _x = 0
        _row_height = 0
    steps = [{"color": color, "value": value} for value, color in (thresholds or [(None, "green")])]
    field_config: dict[str, Any] = {
        "defaults": {
            "unit": unit,
            "thresholds": {"mode": "absolute", "steps": steps},
            "mappings": mappings or [],
        },
        "overrides": [],
    }
    if kind == "timeseries":
        field_config["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10}
    _panels.append(
        {
            "id": len(_panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": height, "w": width, "x": _x, "y": _y},
            "fieldConfig": field_config,
            "options": options or {},
            "targets": [
                {
                    "refId": chr(ord("A") + index),
                    "datasource": DS,
                    "expr": expr,
                    "legendFormat": legend,
                    "instant": instant,
                    "range": not instant,
                }
                for index, (expr, legend) in enumerate(targets)
            ],
        }
    )
    _x += width
    _row_height = max(_row_height, height)


def quantiles(metric: str, selector: str, by: str = "") -> list[tuple[str, str]]:
    """p50/p95/p99 of a histogram over the panel's rate interval."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{int(q * 100)}{suffix}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def build() -> dict[str, Any]:
    """Lay out every row and panel; return the dashboard model."""
    _panels.clear()
    global _y, _x, _row_height
    _y = _x = _row_height = 0

    row("Overview")
    panel(
        "Chat turns / min",
        [(f"sum(rate(hub_chat_turns_total{{{CHAT}}}[{RATE}])) * 60", "turns/min")],
        kind="stat",
        width=4,
        height=4,
    )
    panel(
        "Chat p95 latency",
        [
            (
                f"histogram_quantile(0.95, sum by (le) "
                f"(rate(hub_chat_turn_duration_seconds_bucket{{{CHAT_NO_TENANT}}}[{RATE}])))",
                "p95",
            )
        ],
        kind="stat",
        unit="s",
        width=4,
        height=4,
        thresholds=[(None, "green"), (0.8, "orange"), (1, "red")],
    )
    panel(
        "Fallback share",
        [
            (
                f'sum(rate(hub_chat_turns_total{{{CHAT}, outcome="fallback"}}[{RATE}])) '
                f"/ sum(rate(hub_chat_turns_total{{{CHAT}}}[{RATE}]))",
                "fallback",
            )
        ],
        kind="stat",
        unit="percentunit",
        width=4,
        height=4,
        thresholds=[(None, "green"), (0.1, "orange"), (0.25, "red")],
    )
    panel(
        "LLM cost in range",
        [(f"sum(increase(hub_llm_cost_usd_total{{{CHAT}}}[$__range]))", "USD")],
        kind="stat",
        unit="currencyUSD",
        width=4,
        height=4,
        instant=True,
    )
    panel(
        "Open breakers",
        [(f"count(tenant_connector:hub_breaker_state:max{{{SYNC}}} == 2) or vector(0)", "open")],
        kind="stat",
        width=4,
        height=4,
        thresholds=[(None, "green"), (1, "red")],
    )
    panel(
        "Dead letters",
        [('sum(tenant:hub_dead_letters:max{tenant=~"$tenant"})', "dead letters")],
        kind="stat",
        width=4,
        height=4,
        thresholds=[(None, "green"), (1, "orange")],
    )

    row("Chat")
    panel(
        "Chat turns / min by outcome",
        [
            (
                f"sum by (outcome) (tenant_region_channel_outcome:hub_chat_turns:rate5m{{{CHAT}}}) * 60",
                "{{outcome}}",
            )
        ],
        unit="short",
        description="Recorded over 5 minutes (recording.yml).",
    )
    panel(
        "Fallback and handoff rate",
        [
            (
                f'sum(rate(hub_chat_turns_total{{{CHAT}, outcome="{outcome}"}}[{RATE}])) '
                f"/ sum(rate(hub_chat_turns_total{{{CHAT}}}[{RATE}]))",
                outcome,
            )
            for outcome in ("fallback", "handoff", "error")
        ],
        unit="percentunit",
    )
    panel(
        "Turn latency",
        quantiles("hub_chat_turn_duration_seconds", CHAT_NO_TENANT),
        unit="s",
        thresholds=[(None, "green"), (1, "red")],
        description="Whole turn, request to answer. The alert HubChatLatencyHigh fires when p95 > 1 s.",
    )
    panel(
        "Turn p95 by region and channel",
        [
            (
                f"region_channel:hub_chat_turn_duration_seconds:p95_5m{{{CHAT_NO_TENANT}}}",
                "{{region}} {{channel}}",
            )
        ],
        unit="s",
        width=12,
    )
    panel(
        "Retrieval latency",
        quantiles("hub_retrieval_duration_seconds", 'region=~"$region"'),
        unit="s",
        width=12,
    )

    row("Languages")
    for title, outcome in (
        ("Answer rate by language", "answered"),
        ("Fallback rate by language", "fallback"),
    ):
        panel(
            title,
            [
                (
                    f'sum by (locale) (rate(hub_chat_turns_total{{{LANG}, outcome="{outcome}"}}[{RATE}])) '
                    f"/ sum by (locale) (rate(hub_chat_turns_total{{{LANG}}}[{RATE}]))",
                    "{{locale}}",
                )
            ],
            unit="percentunit",
            description="Share of the language's chat turns; other = a language the tenant has not enabled. "
            "HubChatLocaleFallbackSpike fires when a language's fallback share jumps.",
        )
    panel(
        "Feedback up share by language",
        [
            (
                f'sum by (locale) (rate(hub_chat_feedback_total{{{LANG}, rating="up"}}[{RATE}])) '
                f'/ sum by (locale) (rate(hub_chat_feedback_total{{{LANG}, rating=~"up|down"}}[{RATE}]))',
                "{{locale}}",
            )
        ],
        unit="percentunit",
        description="Answer ratings up (4-5) out of up and down (1-2); neutral (3) left out.",
    )
    panel(
        "Turn latency p50 / p99 by language",
        [
            (
                f"histogram_quantile({q}, sum by (le, locale) "
                f"(rate(hub_chat_turn_duration_seconds_bucket{{{LANG_NO_TENANT}}}[{RATE}])))",
                f"p{int(q * 100)} {{{{locale}}}}",
            )
            for q in (0.5, 0.99)
        ],
        unit="s",
        thresholds=[(None, "green"), (1, "red")],
    )
    panel(
        "Turns / min by language",
        [(f"sum by (locale) (rate(hub_chat_turns_total{{{LANG}}}[{RATE}])) * 60", "{{locale}}")],
    )
    panel(
        "Feedback and handoffs / min by language",
        [
            (
                f"sum by (locale, rating) (rate(hub_chat_feedback_total{{{LANG}}}[{RATE}])) * 60",
                "{{locale}} {{rating}}",
            ),
            (
                f"sum by (locale) "
                f'(rate(hub_handoffs_total{{outcome="opened", locale=~"$locale"}}[{RATE}])) * 60',
                "{{locale}} handoffs",
            ),
        ],
        description="Answer ratings by language; handoffs opened count every tenant, region and channel "
        "(that metric has no such labels).",
    )

    row("LLM usage and cost")
    panel(
        "Tokens / min by model and kind",
        [
            (
                f"sum by (model, kind) (rate(hub_llm_tokens_total{{{CHAT}}}[{RATE}])) * 60",
                "{{model}} {{kind}}",
            )
        ],
    )
    panel(
        "Cost / hour by region and channel",
        [
            (
                f"sum by (region, channel) (rate(hub_llm_cost_usd_total{{{CHAT}}}[{RATE}])) * 3600",
                "{{region}} {{channel}}",
            )
        ],
        unit="currencyUSD",
    )
    panel(
        "Cost in range by model",
        [(f"sum by (model) (increase(hub_llm_cost_usd_total{{{CHAT}}}[$__range]))", "{{model}}")],
        kind="bargauge",
        unit="currencyUSD",
        instant=True,
    )
    panel(
        "Cost in range by tenant",
        [(f"sum by (tenant) (increase(hub_llm_cost_usd_total{{{CHAT}}}[$__range]))", "{{tenant}}")],
        kind="bargauge",
        unit="currencyUSD",
        width=12,
        instant=True,
    )
    panel(
        "Tokens in range by tenant and channel",
        [
            (
                f"sum by (tenant, channel) (increase(hub_llm_tokens_total{{{CHAT}}}[$__range]))",
                "{{tenant}} {{channel}}",
            )
        ],
        kind="bargauge",
        width=12,
        instant=True,
    )

    row("Sync")
    panel(
        "Records / min by connector and stream",
        [
            (
                f"sum by (connector, stream, result) (rate(hub_sync_records_total{{{SYNC}}}[{RATE}])) * 60",
                "{{connector}}/{{stream}} {{result}}",
            )
        ],
        width=12,
    )
    panel(
        "Sync lag by connector and stream",
        [
            (
                f"max by (connector, stream) (tenant_connector_stream:hub_sync_lag_seconds:max{{{SYNC}}})",
                "{{connector}}/{{stream}}",
            )
        ],
        unit="s",
        width=12,
        thresholds=[(None, "green"), (1800, "red")],
        description="Now minus the end of the last successful sync; HubSyncLagOverSlo fires above 30 min.",
    )

    row("Vendors and resilience")
    panel(
        "Vendor latency p95 by connector",
        [
            (
                f"histogram_quantile(0.95, sum by (le, connector) "
                f'(rate(hub_vendor_request_duration_seconds_bucket{{connector=~"$connector"}}[{RATE}])))',
                "{{connector}}",
            )
        ],
        unit="s",
    )
    panel(
        "Vendor requests / s by status",
        [
            (
                f"sum by (connector, status) "
                f'(rate(hub_vendor_request_duration_seconds_count{{connector=~"$connector"}}[{RATE}]))',
                "{{connector}} {{status}}",
            )
        ],
        unit="reqps",
    )
    panel(
        "Vendor errors / min by kind",
        [
            (
                f"sum by (connector, kind) "
                f'(rate(hub_vendor_errors_total{{connector=~"$connector"}}[{RATE}])) * 60',
                "{{connector}} {{kind}}",
            )
        ],
    )
    panel(
        "Circuit breakers",
        [(f"tenant_connector:hub_breaker_state:max{{{SYNC}}}", "{{tenant}} {{connector}}")],
        kind="state-timeline",
        width=24,
        mappings=[
            {
                "type": "value",
                "options": {
                    "0": {"text": "closed", "color": "green", "index": 0},
                    "1": {"text": "half-open", "color": "orange", "index": 1},
                    "2": {"text": "open", "color": "red", "index": 2},
                },
            }
        ],
        thresholds=[(None, "green"), (1, "orange"), (2, "red")],
    )
    panel(
        "Breaker transitions / min by state entered",
        [
            (
                f"sum by (connector, state) "
                f'(rate(hub_breaker_transitions_total{{connector=~"$connector"}}[{RATE}])) * 60',
                "{{connector}} {{state}}",
            )
        ],
        width=12,
    )
    panel(
        "Rate-limit hits / min by scope",
        [(f"sum by (scope) (rate(hub_rate_limit_hits_total[{RATE}])) * 60", "{{scope}}")],
        width=12,
    )

    row("Outbox and dead letters")
    panel(
        "Outbox depth by state",
        [('sum by (state) (tenant_state:hub_outbox_depth:max{tenant=~"$tenant"})', "{{state}}")],
        width=12,
    )
    panel(
        "Dead letters by tenant",
        [('tenant:hub_dead_letters:max{tenant=~"$tenant"}', "{{tenant}}")],
        width=12,
    )

    row("Workers")
    panel(
        "Celery queue depth",
        [("queue:hub_celery_queue_depth:max", "{{queue}}")],
        description="Tasks waiting in Redis per queue; the worker HPAs scale on this.",
    )
    panel(
        "Task duration p95 by task",
        [
            (
                f"histogram_quantile(0.95, sum by (le, task) "
                f"(rate(hub_celery_task_duration_seconds_bucket[{RATE}])))",
                "{{task}}",
            )
        ],
        unit="s",
    )
    panel(
        "Tasks / min by state",
        [
            (
                f"sum by (task, state) (rate(hub_celery_task_duration_seconds_count[{RATE}])) * 60",
                "{{task}} {{state}}",
            )
        ],
    )

    row("HTTP")
    panel(
        "Request latency p95 by route",
        [
            (
                f"histogram_quantile(0.95, sum by (le, route) "
                f"(rate(hub_http_request_duration_seconds_bucket[{RATE}])))",
                "{{route}}",
            )
        ],
        unit="s",
        width=12,
    )
    panel(
        "Requests / s by status class",
        [(f"sum by (status) (rate(hub_http_request_duration_seconds_count[{RATE}]))", "{{status}}")],
        unit="reqps",
        width=6,
    )
    panel(
        "5xx share",
        [("job:hub_http_5xx_ratio:rate5m", "5xx")],
        unit="percentunit",
        width=6,
        thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
    )

    row("Dependencies")
    panel(
        "Dependency errors / min (503 or degraded)",
        [
            (
                f"sum by (dependency, kind) (rate(hub_dependency_errors_total[{RATE}])) * 60",
                "{{dependency}} {{kind}}",
            )
        ],
        description="Calls to Postgres, Redis or the broker that failed or overran their deadline "
        "(docs/operations.md).",
        width=12,
    )
    panel(
        "Served degraded / min by feature",
        [
            (
                f"sum by (dependency, feature) (rate(hub_degraded_total[{RATE}])) * 60",
                "{{dependency}} {{feature}}",
            )
        ],
        description="Calls served without Redis: keys from the database, caches skipped, rate limits open.",
        width=12,
    )

    row("Channels (messaging platforms)")
    panel(
        "Platform messages / min by kind, direction and outcome",
        [
            (
                f"sum by (kind, direction, outcome) (rate(hub_channel_messages_total[{RATE}])) * 60",
                "{{kind}} {{direction}} {{outcome}}",
            )
        ],
        description="WhatsApp, Slack, Teams and SMS messages in (accepted, duplicate, ignored, answered, "
        'failed) and replies out (enqueued, status reports); docs/architecture.md "Channels".',
        width=8,
    )
    panel(
        "Refused platform webhooks / min",
        [
            (
                f"sum by (kind, reason) (rate(hub_channel_webhooks_refused_total[{RATE}])) * 60",
                "{{kind}} {{reason}}",
            )
        ],
        description="Bad signatures, stale timestamps, unknown channels, oversized or malformed bodies.",
        width=8,
    )
    panel(
        "Platform message to reply enqueued (s)",
        quantiles("hub_channel_reply_seconds", 'kind=~".+"'),
        description="From the webhook's arrival to the reply in the outbox.",
        width=8,
    )

    row("Human handoff")
    panel(
        "Handoffs / min by outcome and connector",
        [
            (
                f"sum by (outcome, connector) (rate(hub_handoffs_total[{RATE}])) * 60",
                "{{outcome}} {{connector}}",
            )
        ],
        description="Conversations handed to people (opened), given back to the bot (resolved) or whose "
        'ticket could not be created (failed); docs/architecture.md "Human handoff".',
        width=8,
    )
    panel(
        "Handoff messages / min by direction",
        [
            (
                f"sum by (direction, connector) (rate(hub_handoff_messages_total[{RATE}])) * 60",
                "{{direction}} {{connector}}",
            )
        ],
        description="Agents' public comments delivered to customers (agent_in) and customers' messages "
        "appended to tickets (customer_out).",
        width=8,
    )
    panel(
        "Time to first agent reply (s)",
        quantiles("hub_handoff_first_reply_seconds", 'connector=~".+"'),
        description="From the handoff's request to the first agent message in the conversation.",
        width=8,
    )

    row("End users: identity and the web widget")
    panel(
        "Identity proofs / min by mode and result",
        [
            (
                f"sum by (mode, result) (rate(hub_chat_identity_proofs_total[{RATE}])) * 60",
                "{{mode}} {{result}}",
            )
        ],
        description="User hashes and JWTs checked at conversation start or identify: verified, or why not.",
        width=8,
    )
    panel(
        "Actions refused to end users / min",
        [
            (
                f"sum by (action, reason) (rate(hub_chat_identity_refusals_total[{RATE}])) * 60",
                "{{action}} {{reason}}",
            )
        ],
        description="Order status held back: the user is unverified, has no contact data, or is not the "
        "order's customer (docs/security.md).",
        width=8,
    )
    panel(
        "Web widget requests refused / min",
        [(f"sum by (reason) (rate(hub_widget_refused_total[{RATE}])) * 60", "{{reason}}")],
        description="Origins the channel does not allow, unknown or rotated widget keys, push streams over "
        "the per-process cap.",
        width=8,
    )

    row("Sign-in: single sign-on")
    panel(
        "SSO sign-ins / min by protocol and outcome",
        [
            (
                f"sum by (protocol, outcome) (rate(hub_sso_sign_ins_total[{RATE}])) * 60",
                "{{protocol}} {{outcome}}",
            )
        ],
        description="Sign-ins through a tenant's identity provider: success, or why not: a policy refusal "
        "(no_role, domain_not_verified) or a protocol failure (bad_signature, replayed, expired, "
        "state_mismatch, the IdP unreachable). A rise in failures is an attack or a broken IdP setup: the "
        "audit log says which tenant.",
        width=12,
    )

    row("Provisioning (SCIM)")
    panel(
        "SCIM requests / min by operation and outcome",
        [
            (
                f"sum by (action, outcome) (rate(hub_scim_requests_total[{RATE}])) * 60",
                "{{action}} {{outcome}}",
            )
        ],
        description="Users and groups created, changed or deactivated by the tenants' IdPs (Okta, Entra ID) "
        "at /scim/v2/; unauthorized = bad, revoked or expired SCIM tokens (docs/sso.md).",
        width=12,
    )

    # Issue 22 (auditapi): pages of the audit API, recorded in the chain or left out as repeats.
    row("Compliance: audit API")
    panel(
        "Audit API pages / min, recorded or repeats",
        [(f"sum by (outcome) (rate(hub_audit_api_reads_total[{RATE}])) * 60", "{{outcome}}")],
        description="Pages of the audit log served by /api/v1/tenants/<slug>/audit/events/: each recorded as "
        "one audit.read event, or a poller's repeat left out (docs/compliance.md).",
        width=12,
    )

    # Issue 22 (siem): audit streaming to the tenants' SIEMs (docs/compliance.md, "SIEM streaming").
    row("SIEM streaming")
    panel(
        "SIEM backlog (undelivered audit events)",
        [('max by (tenant, kind) (hub_siem_backlog_events{tenant=~"$tenant"})', "{{tenant}} {{kind}}")],
        description="Audit events after each destination's cursor; waits while a SIEM is down, drains after.",
    )
    panel(
        "SIEM oldest undelivered event age",
        [
            (
                'max by (tenant, kind) (hub_siem_oldest_undelivered_seconds{tenant=~"$tenant"})',
                "{{tenant}} {{kind}}",
            )
        ],
        unit="s",
        description="Alert HubSiemDeliveryStalled above 15 minutes (docs/deploy.md).",
    )
    panel(
        "SIEM events delivered and failed batches / min",
        [
            (f"sum by (kind) (rate(hub_siem_delivered_total[{RATE}])) * 60", "delivered {{kind}}"),
            (f"sum by (kind) (rate(hub_siem_failures_total[{RATE}])) * 60", "failed batches {{kind}}"),
        ],
    )

    row("Data-subject requests")
    panel(
        "Data-subject request events / hour by kind and action",
        [
            (
                f"sum by (kind, action) (rate(hub_dsr_events_total[{RATE}])) * 3600",
                "{{kind}} {{action}}",
            )
        ],
        description="Access and erasure requests registered, extended, rejected and completed; vendor_dead: "
        "a vendor erasure notice the outbox gave up on, which an admin settles on the request's page "
        "(docs/compliance.md).",
        width=12,
    )

    return {
        "uid": "integration-hub",
        "title": "Integration hub",
        "description": "Chat, cost, sync, vendors, queues and HTTP of the integration hub (deploy/grafana).",
        "tags": ["integration-hub"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                variable("tenant", "Tenant", "label_values(hub_chat_turns_total, tenant)"),
                variable("region", "Region", "label_values(hub_chat_turns_total, region)"),
                variable("channel", "Channel", "label_values(hub_chat_turns_total, channel)"),
                variable("locale", "Language", "label_values(hub_chat_turns_total, locale)"),
                variable("connector", "Connector", "label_values(hub_sync_records_total, connector)"),
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": list(_panels),
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
