"""Prometheus metric families of the hub (the catalog in docs/deploy.md) and the helpers code calls.

Multi-process mode: every gunicorn worker and Celery worker process writes its samples to its own file in
PROMETHEUS_MULTIPROC_DIR (set by the settings before prometheus_client is imported), and `/metrics`
merges them all (`registry.scrape_registry`). Gauges that describe shared state (outbox depth, sync lag,
breaker state, queue depth) are not kept by any process: they are read from Postgres and Redis at scrape
time (`collectors.py`).

Labels are bounded by construction: every helper maps free input onto a closed set or a safe token
(tenant slug, region code, connector kind, route name). Never pass ids, paths, names or text. The
chat's `locale` label is a base language code of the tenant's configured locales, or "other" (`locale_label`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from prometheus_client import Counter, Histogram, values

# Exported for the processes this one starts (Celery children, test workers), then the value class is
# chosen again in case something imported prometheus_client before the directory was known.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.HUB_METRICS_DIR)
Path(settings.HUB_METRICS_DIR).mkdir(parents=True, exist_ok=True, mode=0o700)
values.ValueClass = values.get_value_class()

__all__ = [
    "METRIC_FAMILIES",
    "SCRAPE_TIME_FAMILIES",
    "enabled",
    "locale_label",
    "observe_celery_task",
    "observe_chat_turn",
    "observe_http_request",
    "observe_retrieval",
    "observe_vendor_request",
    "record_breaker_transition",
    "record_chat_feedback",
    "record_degraded",
    "record_dependency_error",
    "record_llm_usage",
    "record_rate_limit_hit",
    "record_scim_request",
    "record_siem_delivered",
    "record_siem_failure",
    "record_sso_sign_in",
    "record_sync_records",
    "record_vendor_error",
    "record_widget_refused",
    "status_class",
]

# --- closed label sets ---
CHANNELS = frozenset({"web", "whatsapp", "slack", "teams", "sms", "custom"})
CHAT_OUTCOMES = frozenset({"answered", "fallback", "handoff", "action", "error"})
TOKEN_KINDS = frozenset({"prompt", "completion"})
SYNC_RESULTS = ("created", "updated", "unchanged")
VENDOR_ERROR_KINDS = frozenset({"rate_limited", "unavailable", "auth", "permanent", "timeout"})
RATE_LIMIT_SCOPES = frozenset(
    {"api_key", "tenant", "vendor", "widget_key", "widget_visitor", "scim_token", "helpcenter_visitor"}
    # the management API (apps/tenants/ratelimit.py): a token or session user, a tenant, the audit verify
    | {"api_caller", "api_tenant", "audit_verify"}
)
WIDGET_REFUSALS = frozenset({"origin", "key", "stream_limit"})
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
TASK_STATES = frozenset({"success", "failure", "retry"})
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
QUEUES = ("sync", "outbox", "default", "siem")
DEPENDENCIES = frozenset({"postgres", "redis", "broker"})
DEPENDENCY_ERROR_KINDS = frozenset({"timeout", "unavailable"})
#: What keeps working, differently, while a dependency is down (docs/operations.md).
IDENTITY_MODES = frozenset({"none", "hmac", "jwt"})
IDENTITY_RESULTS = frozenset(
    {"verified", "mode", "no_secret", "no_user", "malformed", "signature", "algorithm", "expired", "audience",
     "claims", "lifetime", "subject"}
)  # fmt: skip
IDENTITY_ACTIONS = frozenset({"order_status", "create_ticket", "capture_lead"})
IDENTITY_REFUSAL_REASONS = frozenset({"unverified", "no_contact", "mismatch"})
DEGRADED_FEATURES = frozenset({"api_key_lookup", "cache", "helpcenter", "rate_limit"})
#: Answer feedback (1-5) as the dashboards read it: 4-5 up, 3 neutral, 1-2 (and any legacy thumbs-down) down.
FEEDBACK_RATINGS = ("up", "neutral", "down")
#: The chat metrics' `locale` label for a language the tenant has not configured (issue 21, seed 004).
LOCALE_OTHER = "other"
#: At most this many configured languages of one tenant get a label of their own; the rest count as "other".
MAX_LOCALE_LABELS = 30
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
#: A slug, region, kind, stream, route or model id: short, no spaces, nothing that could carry text.
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,79}$")

# --- buckets (seconds) ---
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
CHAT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)  # alert: p95 > 1 s
RETRIEVAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
VENDOR_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0)

# --- families written by processes ---
HTTP_REQUEST_DURATION = Histogram(
    "hub_http_request_duration_seconds",
    "HTTP request latency by Django route name, method and status class.",
    ["route", "method", "status"],
    buckets=HTTP_BUCKETS,
)
CHAT_TURNS = Counter(
    "hub_chat_turns_total",
    "Chat turns by outcome and conversation language.",
    ["tenant", "region", "channel", "locale", "outcome"],
)
CHAT_TURN_DURATION = Histogram(
    "hub_chat_turn_duration_seconds",
    "Chat turn latency (request in, answer out).",
    ["region", "channel", "locale"],
    buckets=CHAT_BUCKETS,
)
# Issue 21 (seed 004): answer ratings per language; CSAT after a handoff is not counted here.
CHAT_FEEDBACK = Counter(
    "hub_chat_feedback_total",
    "Answer feedback by rating (up 4-5, neutral 3, down 1-2) and conversation language.",
    ["tenant", "region", "channel", "locale", "rating"],
)
RETRIEVAL_DURATION = Histogram(
    "hub_retrieval_duration_seconds", "Knowledge retrieval latency.", ["region"], buckets=RETRIEVAL_BUCKETS
)
LLM_TOKENS = Counter(
    "hub_llm_tokens_total",
    "LLM tokens used, prompt and completion.",
    ["tenant", "region", "channel", "model", "kind"],
)
LLM_COST = Counter(
    "hub_llm_cost_usd_total", "LLM cost in US dollars.", ["tenant", "region", "channel", "model"]
)
SYNC_RECORDS = Counter(
    "hub_sync_records_total",
    "Records stored by syncs, by what the upsert did.",
    ["tenant", "connector", "stream", "result"],
)
VENDOR_REQUEST_DURATION = Histogram(
    "hub_vendor_request_duration_seconds",
    "Outbound vendor HTTP call latency by connector and status class (error: no answer).",
    ["connector", "status"],
    buckets=VENDOR_BUCKETS,
)
VENDOR_ERRORS = Counter("hub_vendor_errors_total", "Failed vendor calls by kind.", ["connector", "kind"])
RATE_LIMIT_HITS = Counter(
    "hub_rate_limit_hits_total", "Requests held back by a rate limit, by whose limit.", ["scope"]
)
BREAKER_TRANSITIONS = Counter(
    "hub_breaker_transitions_total",
    "Circuit-breaker state changes, by the state entered.",
    ["connector", "state"],
)
DEPENDENCY_ERRORS = Counter(
    "hub_dependency_errors_total",
    "Calls to Postgres, Redis or the broker that failed or overran their deadline (each one a 503, unless a "
    "feature degraded instead).",
    ["dependency", "kind"],
)
DEGRADED = Counter(
    "hub_degraded_total",
    "Calls served without a dependency that is down, by what degraded (API-key lookup from the database, "
    "read-through cache skipped, rate limit not enforced).",
    ["dependency", "feature"],
)
# Issue 17, end-user identity: proofs checked (result "verified" or why it failed) and business actions
# held back because the user is not verified or is not the record's customer.
IDENTITY_PROOFS = Counter(
    "hub_chat_identity_proofs_total",
    "End-user identity proofs (user hash or JWT) by mode and result (verified, or why the proof failed).",
    ["tenant", "channel", "mode", "result"],
)
IDENTITY_REFUSALS = Counter(
    "hub_chat_identity_refusals_total",
    "Business actions refused to an end user: unverified, or verified but not the record's customer.",
    ["tenant", "channel", "action", "reason"],
)
WIDGET_REFUSED = Counter(
    "hub_widget_refused_total",
    "Web widget requests refused: from an origin the channel does not allow, with an unknown or rotated "
    "widget key, or a push stream over the process's cap.",
    ["reason"],
)
# Issue 19, single sign-on: sign-ins through an identity provider by protocol and outcome: success, or the
# reason code of a protocol failure (bad_signature, replayed, state_mismatch...) or of a policy refusal
# (no_role, domain_not_verified...). Reasons come from fixed enums (OidcReason, SamlReason, SsoRefusal).
SSO_SIGN_INS = Counter(
    "hub_sso_sign_ins_total",
    "Sign-ins through a tenant's identity provider by protocol (oidc, saml) and outcome.",
    ["protocol", "outcome"],
)
# Issue 22 (siem): audit events acknowledged by SIEM destinations, and failed batches, by destination kind.
SIEM_KINDS = frozenset({"syslog_tls", "splunk_hec", "webhook"})
SIEM_DELIVERED = Counter(
    "hub_siem_delivered_total", "Audit events acknowledged by SIEM destinations, by kind.", ["kind"]
)
SIEM_FAILURES = Counter(
    "hub_siem_failures_total", "SIEM delivery batches that failed (cursor kept, retried), by kind.", ["kind"]
)
CELERY_TASK_DURATION = Histogram(
    "hub_celery_task_duration_seconds",
    "Celery task run time by task name and how it ended.",
    ["task", "state"],
    buckets=TASK_BUCKETS,
)

#: Families read at scrape time from Postgres and Redis (apps.observability.collectors).
SCRAPE_TIME_FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "hub_sync_lag_seconds": (
        "gauge",
        "Seconds since the last successful sync of a stream ended.",
        ("tenant", "connector", "stream"),
    ),
    "hub_breaker_state": (
        "gauge",
        "Circuit-breaker state per tenant and connector: 0 closed, 1 half-open, 2 open (worst connection).",
        ("tenant", "connector"),
    ),
    "hub_outbox_depth": ("gauge", "Undelivered outbox messages by state.", ("tenant", "state")),
    "hub_dead_letters": ("gauge", "Open dead letters.", ("tenant",)),
    "hub_celery_queue_depth": ("gauge", "Messages waiting in each Celery queue.", ("queue",)),
    # Issue 22 (siem): how far each SIEM destination is behind its tenant's audit chain.
    "hub_siem_backlog_events": (
        "gauge",
        "Audit events not yet delivered to SIEM destinations, by tenant and destination kind.",
        ("tenant", "kind"),
    ),
    "hub_siem_oldest_undelivered_seconds": (
        "gauge",
        "Age of the oldest audit event not yet delivered to a SIEM destination (0 when caught up).",
        ("tenant", "kind"),
    ),
}

# --- messaging channels (issue 17, slice "ingest") ---
CHANNEL_DIRECTIONS = frozenset({"in", "out"})
CHANNEL_OUTCOMES = frozenset(
    {
        "accepted",
        "duplicate",
        "ignored",
        "answered",
        "handoff_quiet",
        "failed",
        "enqueued",
        "status",
        "template",  # issue 18: a late reply sent in the WhatsApp template
        "held",  # issue 18: a later message that could not be sent (apps/chat/services/delivery.py)
        "status_unmatched",
        "email_unavailable",
    }
)
CHANNEL_REFUSALS = frozenset(
    {"unknown_channel", "too_large", "malformed", "keys_unavailable", "rate_limited", "method"}
)
CHANNEL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
CHANNEL_MESSAGES = Counter(
    "hub_channel_messages_total",
    "Messaging-platform messages by channel kind, direction (in/out) and outcome.",
    ["kind", "direction", "outcome"],
)
CHANNEL_WEBHOOKS_REFUSED = Counter(
    "hub_channel_webhooks_refused_total",
    "Refused messaging-platform webhook requests by channel kind and reason.",
    ["kind", "reason"],
)
CHANNEL_REPLY_DURATION = Histogram(
    "hub_channel_reply_seconds",
    "Seconds from a platform message's arrival to its reply being enqueued for delivery.",
    ["kind"],
    buckets=CHANNEL_BUCKETS,
)
# Issue 18 (slice "roundtrip"): human handoff both ways.
HANDOFF_EVENTS = frozenset({"opened", "resolved", "failed"})
HANDOFF_DIRECTIONS = frozenset({"agent_in", "customer_out"})
HANDOFFS = Counter(
    "hub_handoffs_total",
    "Handoffs to people by outcome (opened, resolved, failed), ticketing connector and conversation "
    "language.",
    ["outcome", "connector", "locale"],
)
HANDOFF_MESSAGES = Counter(
    "hub_handoff_messages_total",
    "Messages carried during handoffs: agents' comments in (agent_in), customers' out (customer_out).",
    ["direction", "connector"],
)
HANDOFF_FIRST_REPLY = Histogram(
    "hub_handoff_first_reply_seconds",
    "Seconds from a handoff's request to the first agent message reaching the conversation.",
    ["connector"],
    buckets=(10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0),
)
# Issue 19 (slice "scim"): SCIM provisioning requests by operation and outcome.
SCIM_ACTIONS = frozenset(
    {"discovery", "users_list", "user_get", "user_create", "user_replace", "user_patch", "user_delete",
     "groups_list", "group_get", "group_create", "group_replace", "group_patch", "group_delete", "unknown"}
)  # fmt: skip
SCIM_OUTCOMES = frozenset(
    {"ok", "invalid", "unauthorized", "not_found", "conflict", "too_large", "rate_limited", "unavailable",
     "error"}
)  # fmt: skip
SCIM_REQUESTS = Counter(
    "hub_scim_requests_total",
    "SCIM provisioning requests by operation (action) and outcome.",
    ["action", "outcome"],
)
# Issue 22 (slice "auditapi"): pages of the audit API served, recorded as `audit.read` or deduplicated.
AUDIT_API_READS = Counter(
    "hub_audit_api_reads_total",
    "Pages of the audit log served by the API: recorded in the chain, or a repeat left out.",
    ["outcome"],
)
# Issue 22 (slice "dsr"): data-subject requests by kind and event (a closed set).
DSR_EVENTS = frozenset({"created", "extended", "rejected", "completed", "vendor_dead"})
DSR_REQUESTS = Counter(
    "hub_dsr_events_total",
    "Data-subject request events: created, extended, rejected, completed, vendor_dead (a notice died).",
    ["kind", "action"],
)

PROCESS_FAMILIES = (
    HTTP_REQUEST_DURATION,
    CHAT_TURNS,
    CHAT_TURN_DURATION,
    CHAT_FEEDBACK,
    RETRIEVAL_DURATION,
    LLM_TOKENS,
    LLM_COST,
    SYNC_RECORDS,
    VENDOR_REQUEST_DURATION,
    VENDOR_ERRORS,
    RATE_LIMIT_HITS,
    BREAKER_TRANSITIONS,
    CELERY_TASK_DURATION,
    DEPENDENCY_ERRORS,
    DEGRADED,
    IDENTITY_PROOFS,
    IDENTITY_REFUSALS,
    CHANNEL_MESSAGES,
    CHANNEL_WEBHOOKS_REFUSED,
    CHANNEL_REPLY_DURATION,
    WIDGET_REFUSED,
    HANDOFFS,
    HANDOFF_MESSAGES,
    HANDOFF_FIRST_REPLY,
    SSO_SIGN_INS,
    SCIM_REQUESTS,
    AUDIT_API_READS,
    SIEM_DELIVERED,
    SIEM_FAILURES,
    DSR_REQUESTS,
)


def _exposed_name(metric: Counter | Histogram) -> str:
    name: str = metric._name  # prometheus_client strips "_total" from counter names
    return f"{name}_total" if isinstance(metric, Counter) else name


#: Every family `/metrics` exposes, as named in the text format (counters with `_total`).
METRIC_FAMILIES: frozenset[str] = frozenset(
    {_exposed_name(m) for m in PROCESS_FAMILIES} | set(SCRAPE_TIME_FAMILIES)
)


# --- label hygiene ---
def token(value: object, *, default: str = "unknown") -> str:
    """Return `value` when it is a short identifier-like token, else `default` (never free text)."""
    text = str(value) if value is not None else ""
    return text if _TOKEN.match(text) else default


def _one_of(value: str, allowed: Iterable[str], *, default: str) -> str:
    return value if value in allowed else default


def channel_label(channel: str) -> str:
    """Map a channel kind onto the closed set; anything else is "custom"."""
    return _one_of(channel, CHANNELS, default="custom")


def configured_languages(locales: Iterable[str]) -> tuple[str, ...]:
    """The base languages of a tenant's configured locales ("de-CH" -> "de"), valid ones only, in order."""
    languages: dict[str, None] = {}
    for locale in locales:
        language = str(locale).split("-", 1)[0]
        if _LANGUAGE.match(language):
            languages[language] = None
            if len(languages) == MAX_LOCALE_LABELS:
                break
    return tuple(languages)


def locale_label(locale: str, *, locales: Iterable[str]) -> str:
    """The `locale` label of a conversation in `locale`: its base language when the tenant configured it
    (`locales`: the tenant's enabled locales), else "other".

    The value is always one of `configured_languages(locales)` or "other", never the caller's text: what a
    browser or channel sent can pick a configured language, not add one.
    """
    language = re.split(r"[-_]", str(locale or ""), maxsplit=1)[0].strip().lower()
    return next((lang for lang in configured_languages(locales) if lang == language), LOCALE_OTHER)


def feedback_rating(rating: int) -> str:
    """Map a 1-5 answer rating onto up/neutral/down (ratings below 1, the old thumbs-down, are down)."""
    if rating >= 4:
        return "up"
    return "neutral" if rating == 3 else "down"


def status_class(status: int | None) -> str:
    """2xx/3xx/4xx/5xx, or "error" when there was no HTTP answer."""
    if status is None or not 100 <= status <= 599:
        return "error"
    return f"{status // 100}xx"


def enabled() -> bool:
    return bool(getattr(settings, "HUB_METRICS_ENABLED", True))


# --- the helpers the rest of the code calls ---
def observe_http_request(*, route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUEST_DURATION.labels(
        route=token(route, default="unmatched"),
        method=_one_of(method.upper(), HTTP_METHODS, default="other"),
        status=status_class(status),
    ).observe(seconds)


def observe_chat_turn(
    *,
    tenant: str,
    region: str,
    channel: str,
    outcome: str,
    seconds: float,
    locale: str,
    locales: Iterable[str],
) -> None:
    """Count one chat turn and its latency; `channel` is the channel kind, never its name; `locale` is the
    conversation's, labelled by `locale_label` against the tenant's configured `locales`."""
    if outcome not in CHAT_OUTCOMES:
        raise ValueError(f"unknown chat outcome {outcome!r}; one of {sorted(CHAT_OUTCOMES)}")
    channel = channel_label(channel)
    region = token(region)
    language = locale_label(locale, locales=locales)
    CHAT_TURNS.labels(
        tenant=token(tenant), region=region, channel=channel, locale=language, outcome=outcome
    ).inc()
    CHAT_TURN_DURATION.labels(region=region, channel=channel, locale=language).observe(seconds)


def record_chat_feedback(
    *, tenant: str, region: str, channel: str, rating: int, locale: str, locales: Iterable[str]
) -> None:
    """Count one answer rating (1-5) as up, neutral or down, in the conversation's language."""
    CHAT_FEEDBACK.labels(
        tenant=token(tenant),
        region=token(region),
        channel=channel_label(channel),
        locale=locale_label(locale, locales=locales),
        rating=feedback_rating(rating),
    ).inc()


def observe_retrieval(*, region: str, seconds: float) -> None:
    RETRIEVAL_DURATION.labels(region=token(region)).observe(seconds)


def record_llm_usage(
    *,
    tenant: str,
    region: str,
    channel: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: float = 0.0,
) -> None:
    """Add one generation's token counts and cost (zero cost for the offline provider)."""
    labels = {
        "tenant": token(tenant),
        "region": token(region),
        "channel": channel_label(channel),
        "model": token(model),
    }
    if prompt_tokens > 0:
        LLM_TOKENS.labels(**labels, kind="prompt").inc(prompt_tokens)
    if completion_tokens > 0:
        LLM_TOKENS.labels(**labels, kind="completion").inc(completion_tokens)
    if cost_usd > 0:
        LLM_COST.labels(**labels).inc(cost_usd)


def record_sync_records(
    *, tenant: str, connector: str, stream: str, created: int, updated: int, unchanged: int
) -> None:
    labels = {"tenant": token(tenant), "connector": token(connector), "stream": token(stream)}
    for result, count in zip(SYNC_RESULTS, (created, updated, unchanged), strict=True):
        if count > 0:
            SYNC_RECORDS.labels(**labels, result=result).inc(count)


def observe_vendor_request(*, connector: str, status: int | None, seconds: float) -> None:
    VENDOR_REQUEST_DURATION.labels(connector=token(connector), status=status_class(status)).observe(seconds)


def record_vendor_error(*, connector: str, kind: str) -> None:
    if kind not in VENDOR_ERROR_KINDS:
        raise ValueError(f"unknown vendor error kind {kind!r}; one of {sorted(VENDOR_ERROR_KINDS)}")
    VENDOR_ERRORS.labels(connector=token(connector), kind=kind).inc()


def record_rate_limit_hit(scope: str) -> None:
    """Count a request held back by a limit: an API key's, a tenant's, or a vendor quota."""
    if scope not in RATE_LIMIT_SCOPES:
        raise ValueError(f"unknown rate-limit scope {scope!r}; one of {sorted(RATE_LIMIT_SCOPES)}")
    RATE_LIMIT_HITS.labels(scope=scope).inc()


def record_widget_refused(reason: str) -> None:
    """Count a web widget request refused (issue 17): bad origin, bad key, or too many push streams."""
    if reason not in WIDGET_REFUSALS:
        raise ValueError(f"unknown widget refusal {reason!r}; one of {sorted(WIDGET_REFUSALS)}")
    WIDGET_REFUSED.labels(reason=reason).inc()


def record_breaker_transition(*, connector: str, state: str) -> None:
    if state not in BREAKER_STATES:
        raise ValueError(f"unknown breaker state {state!r}")
    BREAKER_TRANSITIONS.labels(connector=token(connector), state=state).inc()


def observe_celery_task(*, task: str, state: str, seconds: float) -> None:
    CELERY_TASK_DURATION.labels(
        task=token(task), state=_one_of(state, TASK_STATES, default="failure")
    ).observe(seconds)


def record_dependency_error(*, dependency: str, kind: str) -> None:
    """Count a failed or overdue call to a dependency ("postgres", "redis", "broker")."""
    DEPENDENCY_ERRORS.labels(
        dependency=_one_of(dependency, DEPENDENCIES, default="postgres"),
        kind=_one_of(kind, DEPENDENCY_ERROR_KINDS, default="unavailable"),
    ).inc()


def record_degraded(*, dependency: str, feature: str) -> None:
    """Count a request served in a degraded way because `dependency` is down."""
    if feature not in DEGRADED_FEATURES:
        raise ValueError(f"unknown degraded feature {feature!r}; one of {sorted(DEGRADED_FEATURES)}")
    DEGRADED.labels(dependency=_one_of(dependency, DEPENDENCIES, default="redis"), feature=feature).inc()


def record_identity_proof(*, tenant: str, channel: str, mode: str, result: str) -> None:
    """Count one end-user identity proof: `result` is "verified" or the (bounded) reason it failed."""
    IDENTITY_PROOFS.labels(
        tenant=token(tenant),
        channel=channel_label(channel),
        mode=_one_of(mode, IDENTITY_MODES, default="none"),
        result=_one_of(result, IDENTITY_RESULTS, default="malformed"),
    ).inc()


def record_identity_refusal(*, tenant: str, channel: str, action: str, reason: str) -> None:
    """Count a business action refused because the user is unverified or not the record's customer."""
    IDENTITY_REFUSALS.labels(
        tenant=token(tenant),
        channel=channel_label(channel),
        action=_one_of(action, IDENTITY_ACTIONS, default="order_status"),
        reason=_one_of(reason, IDENTITY_REFUSAL_REASONS, default="unverified"),
    ).inc()


def record_channel_message(*, kind: str, direction: str, outcome: str) -> None:
    """Count a platform message in (accepted, duplicate, ignored...) or out (enqueued) by channel kind."""
    CHANNEL_MESSAGES.labels(
        kind=channel_label(kind),
        direction=_one_of(direction, CHANNEL_DIRECTIONS, default="in"),
        outcome=_one_of(outcome, CHANNEL_OUTCOMES, default="failed"),
    ).inc()


def record_channel_refused(*, kind: str, reason: str) -> None:
    """Count a refused channel webhook; `reason` is an adapter's short word or one of CHANNEL_REFUSALS."""
    CHANNEL_WEBHOOKS_REFUSED.labels(kind=channel_label(kind), reason=token(reason)).inc()


def observe_channel_reply(*, kind: str, seconds: float) -> None:
    CHANNEL_REPLY_DURATION.labels(kind=channel_label(kind)).observe(seconds)


def record_handoff(*, event: str, connector: str, locale: str, locales: Iterable[str]) -> None:
    """Count a handoff opened, resolved (back with the bot) or failed (its ticket could not be created), in
    the conversation's language (`locale_label`)."""
    HANDOFFS.labels(
        outcome=_one_of(event, HANDOFF_EVENTS, default="failed"),
        connector=token(connector),
        locale=locale_label(locale, locales=locales),
    ).inc()


def record_handoff_message(*, direction: str, connector: str) -> None:
    HANDOFF_MESSAGES.labels(
        direction=_one_of(direction, HANDOFF_DIRECTIONS, default="agent_in"), connector=token(connector)
    ).inc()


def observe_handoff_first_reply(*, connector: str, seconds: float) -> None:
    HANDOFF_FIRST_REPLY.labels(connector=token(connector)).observe(max(0.0, seconds))


def record_sso_sign_in(*, protocol: str, outcome: str) -> None:
    """Count one single sign-on attempt (OIDC or SAML) by outcome; outcomes are short reason tokens."""
    SSO_SIGN_INS.labels(
        protocol=_one_of(protocol, ("oidc", "saml"), default="unknown"), outcome=token(outcome)
    ).inc()


def record_scim_request(*, action: str, outcome: str) -> None:
    """Count one /scim/v2/ request (operation and outcome from closed sets)."""
    SCIM_REQUESTS.labels(
        action=_one_of(action, SCIM_ACTIONS, default="unknown"),
        outcome=_one_of(outcome, SCIM_OUTCOMES, default="error"),
    ).inc()


def record_audit_read(*, recorded: bool) -> None:
    """Count one page of the audit API: recorded as an `audit.read` event, or left out as a repeat."""
    AUDIT_API_READS.labels(outcome="recorded" if recorded else "repeat").inc()


def record_siem_delivered(*, kind: str, count: int) -> None:
    """Count audit events a SIEM destination acknowledged (kind from a closed set)."""
    SIEM_DELIVERED.labels(kind=_one_of(kind, SIEM_KINDS, default="unknown")).inc(count)


def record_siem_failure(*, kind: str) -> None:
    """Count one failed SIEM delivery batch."""
    SIEM_FAILURES.labels(kind=_one_of(kind, SIEM_KINDS, default="unknown")).inc()


def record_dsr_event(*, kind: str, event: str) -> None:
    """Count one data-subject request event (kind access/erasure; event from DSR_EVENTS)."""
    DSR_REQUESTS.labels(
        kind=_one_of(kind, ("access", "erasure"), default="access"),
        action=_one_of(event, DSR_EVENTS, default="created"),
    ).inc()
