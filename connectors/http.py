"""The one outbound HTTP path: timeouts, safe retries, private-address guard, rate limits, redaction."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from connectors.errors import AddressNotAllowed, ConnectorError, RateLimited, VendorUnavailable

logger = logging.getLogger("connectors.http")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
SECRET_PARAMS = re.compile(
    r"(?i)((?:access_token|refresh_token|client_secret|password|token|assertion|hapikey|sig)=)[^&\s\"']+"
)
DEFAULT_TIMEOUT = (5.0, 30.0)


@dataclass(frozen=True, slots=True)
class Quota:
    """Remaining vendor quota seen on the last response, for quota-aware scheduling."""

    used: int | None
    limit: int | None
    scope: str


class HttpSession(requests.Session):
    """A requests session that enforces the hub's outbound rules on every call, whoever makes it.

    Vendor clients (simple-salesforce, zeep) are handed this session, so their calls get the same
    timeouts, guard and redaction as ours.
    """

    def __init__(
        self,
        *,
        allow_hosts: Iterable[str] = (),
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        backoff: float = 0.2,
        ca_bundle: str | None = None,
    ) -> None:
        super().__init__()
        self.allow_hosts = frozenset(h.lower() for h in allow_hosts)
        self.timeout = timeout
        self.secrets: set[str] = set()
        self.last_quota: Quota | None = None
        # A connector sets this to record its vendor's quota headers from every response.
        self.quota_parser: Callable[[Mapping[str, str]], Quota | None] | None = None
        self.ca_bundle = ca_bundle
        retry = Retry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            allowed_methods=IDEMPOTENT_METHODS,
            status_forcelist=(502, 503, 504),
            backoff_factor=backoff,
            backoff_max=2.0,
            respect_retry_after_header=False,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=8)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def add_secret(self, value: str) -> None:
        """Register a value that must never appear in a log line or error message."""
        if value and len(value) >= 4:
            self.secrets.add(value)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        url_s = url.decode() if isinstance(url, bytes) else url
        method_s = method.decode() if isinstance(method, bytes) else method
        self.check_address(url_s)
        kwargs.setdefault("timeout", self.timeout)
        if self.ca_bundle:
            # Per request: requests lets REQUESTS_CA_BUNDLE override a session-level `verify`.
            kwargs.setdefault("verify", self.ca_bundle)
        started = time.monotonic()
        try:
            response = super().request(method_s, url_s, *args, **kwargs)
        except requests.Timeout as exc:
            raise VendorUnavailable(self.redact(f"Timed out calling {safe_url(url_s)}")) from exc
        except requests.exceptions.SSLError as exc:
            # Almost always a trust or certificate problem: retrying cannot fix it.
            raise ConnectorError(f"TLS verification failed for {safe_url(url_s)}", permanent=True) from exc
        except requests.ConnectionError as exc:
            raise VendorUnavailable(self.redact(f"Cannot reach {safe_url(url_s)}")) from exc
        if self.quota_parser is not None:
            self.last_quota = self.quota_parser(response.headers) or self.last_quota
        logger.debug(
            "%s %s -> %s in %.0f ms",
            method_s,
            self.redact(safe_url(url_s)),
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def check_address(self, url: str) -> None:
        """Refuse private, loopback and link-local targets unless the host is allow-listed (SSRF guard)."""
        host = (urlsplit(url).hostname or "").lower()
        if not host:
            raise AddressNotAllowed(f"URL has no host: {safe_url(url)}")
        if host in self.allow_hosts:
            return
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise VendorUnavailable(f"Cannot resolve host {host}") from exc
        for info in infos:
            ip = ipaddress.ip_address(info[4][0])
            if not ip.is_global:
                raise AddressNotAllowed(f"Host {host} resolves to non-public address {ip}; not allow-listed")


def make_session(
    *,
    allow_hosts: Iterable[str] = (),
    ca_bundle: str | None = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    max_retries: int = 2,
) -> HttpSession:
    """Build the session connectors use (the sync engine passes allow_hosts from settings)."""
    return HttpSession(allow_hosts=allow_hosts, ca_bundle=ca_bundle, timeout=timeout, max_retries=max_retries)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Strip credential query parameters and any known secret value from `text`."""
    text = SECRET_PARAMS.sub(r"\1***", text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def safe_url(url: str) -> str:
    """Drop userinfo from a URL; query secrets are handled by `redact`."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return redact(parts.geturl())


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse a Retry-After header given as seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError):
        return None


def seconds_to_utc_midnight(now: datetime | None = None) -> float:
    now = now or datetime.now(UTC)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


# --- per-vendor rate-limit signals -------------------------------------------------------------


def salesforce_limit(response: requests.Response) -> RateLimited | None:
    """403 REQUEST_LIMIT_EXCEEDED (not 429) means the org's rolling 24 h API quota is spent."""
    if response.status_code != 403:
        return None
    body = json_or_none(response)
    first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
    if first.get("errorCode") != "REQUEST_LIMIT_EXCEEDED":
        return None
    retry = parse_retry_after(response.headers.get("Retry-After"))
    return RateLimited(
        f"Salesforce API limit exceeded: {first.get('message', '')}".strip(),
        retry_after=retry if retry is not None else 3600.0,
        scope="daily",
        status=403,
        code="REQUEST_LIMIT_EXCEEDED",
    )


def salesforce_quota(headers: Mapping[str, str]) -> Quota | None:
    match = re.search(r"api-usage=(\d+)/(\d+)", headers.get("Sforce-Limit-Info", ""))
    if not match:
        return None
    return Quota(used=int(match.group(1)), limit=int(match.group(2)), scope="daily")


def hubspot_limit(response: requests.Response) -> RateLimited | None:
    """429 with policyName TEN_SECONDLY_ROLLING (wait the interval) or DAILY (wait until midnight)."""
    if response.status_code != 429:
        return None
    body = json_or_none(response) or {}
    policy = str(body.get("policyName") or "TEN_SECONDLY_ROLLING").upper()
    retry = parse_retry_after(response.headers.get("Retry-After"))
    if policy == "DAILY":
        scope = "daily"
        retry = retry if retry is not None else seconds_to_utc_midnight()
    else:
        scope = "secondly" if policy == "SECONDLY" else "ten_secondly"
        if retry is None:
            interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
            retry = int(interval) / 1000 if interval and interval.isdigit() else 10.0
    return RateLimited(
        f"HubSpot rate limit: {body.get('message', 'too many requests')}",
        retry_after=retry,
        scope=scope,
        status=429,
        code=policy,
    )


def hubspot_quota(headers: Mapping[str, str]) -> Quota | None:
    remaining = headers.get("X-HubSpot-RateLimit-Daily-Remaining")
    daily = headers.get("X-HubSpot-RateLimit-Daily")
    if not (remaining and daily and remaining.isdigit() and daily.isdigit()):
        return None
    return Quota(used=int(daily) - int(remaining), limit=int(daily), scope="daily")


def servicenow_limit(response: requests.Response) -> RateLimited | None:
    """429 with Retry-After seconds; X-RateLimit-Reset (epoch seconds) as fallback."""
    if response.status_code != 429:
        return None
    retry = parse_retry_after(response.headers.get("Retry-After"))
    reset = response.headers.get("X-RateLimit-Reset")
    if retry is None and reset and reset.isdigit():
        retry = max(0.0, int(reset) - time.time())
    rule = response.headers.get("X-RateLimit-Rule", "")
    return RateLimited(
        f"ServiceNow rate limit rule {rule or '(unnamed)'} exceeded",
        retry_after=retry if retry is not None else 60.0,
        scope="hourly",
        status=429,
        code=rule or None,
    )


def generic_limit(response: requests.Response) -> RateLimited | None:
    """429 (or 503 with Retry-After) from an API gateway in front of the vendor."""
    retry = parse_retry_after(response.headers.get("Retry-After"))
    if response.status_code == 429 or (response.status_code == 503 and retry is not None):
        return RateLimited(
            f"Rate limited (HTTP {response.status_code})",
            retry_after=retry if retry is not None else 60.0,
            scope="gateway",
            status=response.status_code,
        )
    return None
