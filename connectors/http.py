"""The one outbound HTTP path: timeouts, safe retries, private-address guard, rate limits, redaction.

Outbound rules, and why (issue 14, "Outbound requests (SSRF) and stored credentials"):

- **Redirects are refused, never followed.** Vendor and language-model APIs answer where they are asked;
  a 3xx from one is either a misconfigured URL or an attempt to bounce the hub (and the credentials it sends)
  to another host. Following redirects safely would mean re-checking every hop and stripping credentials
  on every cross-origin hop, in our code and in the vendor clients that get this session (simple-salesforce,
  zeep); refusing them is simpler and closes the hole for all of them at once. The caller gets
  `RedirectRefused` naming where the redirect pointed, so an admin can enter the final address.
- **Resolve once, connect to what was checked.** `GuardedAdapter` resolves the host, refuses the request if
  any address is not public (see `address_problem`), and connects to the first checked address, keeping
  the Host header, TLS SNI and certificate checks for the host name: a DNS answer that changes between the
  check and the connect (rebinding) cannot steer the connection. Allow-listed host names (the simulators on
  loopback, an on-premises SAP) connect normally.
- **Embedded IPv4 is judged by the IPv4 address it carries**: IPv4-mapped and IPv4-compatible IPv6, NAT64
  (64:ff9b::/96), 6to4 and Teredo reach the embedded address, so 64:ff9b::a00:1 is as private as 10.0.0.1.
  The local-use NAT64 prefix 64:ff9b:1::/48 is refused outright (its mapping is site-specific).
- **https only where the deployment says so** (`require_https`; the hub sets it from
  HUB_OUTBOUND_REQUIRE_HTTPS, on in production): Basic auth, WS-Security passwords and bearer tokens never
  travel in clear text.

The requests-hardened package does the resolve-and-pin the same way, but its filter is fixed (no per-host
allow-list, every NAT64 address refused, IPv4-compatible addresses let through), so the adapter is our own,
~40 lines on requests' documented `build_connection_pool_key_attributes` hook.
"""

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
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.util.retry import Retry

from connectors.errors import (
    AddressNotAllowed,
    ConnectorError,
    InsecureUrl,
    RateLimited,
    RedirectRefused,
    VendorUnavailable,
)

logger = logging.getLogger("connectors.http")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
SECRET_PARAMS = re.compile(
    r"(?i)((?:access_token|refresh_token|client_secret|password|token|assertion|hapikey|sig)=)[^&\s\"']+"
)
DEFAULT_TIMEOUT = (5.0, 30.0)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# Not public, although Python's `is_global` (3.11) says they are.
_ALSO_REFUSED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "5f00::/16",  # SRv6 SIDs
        "2001:20::/28",  # ORCHIDv2
        "3fff::/20",  # documentation
        "fec0::/10",  # site-local (deprecated, still routed inside some networks)
    )
)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 address(es) an IPv6 address carries to (mapped, compatible, NAT64, 6to4, Teredo), else ()."""
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # (server, client): packets go through the one to the other
    return ()


def address_problem(ip: IPAddress) -> str | None:
    """Why the hub must not connect to `ip` (None: a public unicast address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return "local-use NAT64"
        carried = embedded_ipv4(ip)
        if carried:
            problems = [p for p in map(address_problem, carried) if p]
            return f"carries IPv4 {', '.join(map(str, carried))} ({problems[0]})" if problems else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global or any(ip in net for net in _ALSO_REFUSED if net.version == ip.version):
        return "not public"
    return None


@dataclass(frozen=True, slots=True)
class Quota:
    """Remaining vendor quota seen on the last response, for quota-aware scheduling."""

    used: int | None
    limit: int | None
    scope: str


class GuardedAdapter(HTTPAdapter):
    """Connect to an address checked just before, by IP, keeping Host, SNI and certificate checks by name."""

    def __init__(self, *, resolve: Callable[[str, int | None], str | None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolve = resolve

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        hostname, port = host_params["host"], host_params["port"]
        pinned = self.resolve(hostname, port)
        if pinned is None:  # allow-listed by name: connect as usual
            return host_params, pool_kwargs
        host_header = f"[{hostname}]" if ":" in hostname else hostname
        if port is not None:
            host_header += f":{port}"
        # A copy: some clients share one headers dict between requests.
        request.headers = CaseInsensitiveDict(request.headers or {})
        request.headers["Host"] = host_header
        if host_params["scheme"] == "https":
            pool_kwargs["assert_hostname"] = hostname
            pool_kwargs["server_hostname"] = hostname
        host_params["host"] = f"[{pinned}]" if ":" in pinned else pinned
        return host_params, pool_kwargs


class HttpSession(requests.Session):
    """A requests session that enforces the hub's outbound rules on every call, whoever makes it.

    Vendor clients (simple-salesforce, zeep) are handed this session, so their calls get the same
    timeouts, guard, redirect refusal and redaction as ours.
    """

    def __init__(
        self,
        *,
        allow_hosts: Iterable[str] = (),
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        backoff: float = 0.2,
        ca_bundle: str | None = None,
        require_https: bool = False,
    ) -> None:
        super().__init__()
        self.allow_hosts = frozenset(h.lower().strip("[]") for h in allow_hosts)
        self.timeout = timeout
        self.require_https = require_https
        self.secrets: set[str] = set()
        self.last_quota: Quota | None = None
        # A connector sets this to record its vendor's quota headers from every response.
        self.quota_parser: Callable[[Mapping[str, str]], Quota | None] | None = None
        self.ca_bundle = ca_bundle
        self.max_redirects = 0
        retry = Retry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            redirect=0,
            allowed_methods=IDEMPOTENT_METHODS,
            status_forcelist=(502, 503, 504),
            backoff_factor=backoff,
            backoff_max=2.0,
            respect_retry_after_header=False,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        adapter = GuardedAdapter(resolve=self.resolve_checked, max_retries=retry, pool_maxsize=8)
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
        self.check_url(url_s)
        kwargs.setdefault("timeout", self.timeout)
        kwargs["allow_redirects"] = False
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
        if response.is_redirect:
            target = urljoin(url_s, response.headers.get("Location", ""))
            response.close()
            raise RedirectRefused(
                self.redact(
                    f"{safe_url(url_s)} answered HTTP {response.status_code} redirecting to "
                    f"{safe_url(target)}; redirects are not followed: enter the final address"
                ),
                status=response.status_code,
            )
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

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # Whoever calls send directly (a vendor client, requests' own redirect loop) gets no redirects either.
        kwargs["allow_redirects"] = False
        return super().send(request, **kwargs)

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        return None  # requests' redirect loop never starts

    def check_url(self, url: str) -> None:
        """Refuse a URL that is not http(s), has no host, or is plain http where https is required."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise InsecureUrl(f"Only http and https URLs are allowed: {safe_url(url)}")
        if not parts.hostname:
            raise AddressNotAllowed(f"URL has no host: {safe_url(url)}")
        if scheme != "https" and self.require_https:
            raise InsecureUrl(f"Plain http is not allowed, use https: {safe_url(url)}")

    def check_address(self, url: str) -> None:
        """Refuse private, loopback and link-local targets unless the host is allow-listed (SSRF guard)."""
        self.check_url(url)
        parts = urlsplit(url)
        self.resolve_checked(parts.hostname or "", parts.port)

    def resolve_checked(self, host: str, port: int | None) -> str | None:
        """Resolve `host` and return the address to connect to; refuse if any address is not public.

        Returns None for an allow-listed host name (connect by name as usual).
        """
        host = host.lower().strip("[]")
        if not host:
            raise AddressNotAllowed("URL has no host")
        if host in self.allow_hosts:
            return None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise VendorUnavailable(f"Cannot resolve host {host}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise VendorUnavailable(f"Cannot resolve host {host}")
        for ip in addresses:
            problem = address_problem(ip)
            if problem:
                raise AddressNotAllowed(
                    f"Host {host} resolves to non-public address {ip} ({problem}); not allow-listed"
                )
        return str(addresses[0])


def make_session(
    *,
    allow_hosts: Iterable[str] = (),
    ca_bundle: str | None = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    max_retries: int = 2,
    require_https: bool = False,
) -> HttpSession:
    """Build the session connectors use (the hub passes allow_hosts and require_https from settings)."""
    return HttpSession(
        allow_hosts=allow_hosts,
        ca_bundle=ca_bundle,
        timeout=timeout,
        max_retries=max_retries,
        require_https=require_https,
    )


def url_origin(url: str) -> str:
    """scheme://host:port of `url`, lower-cased with the port spelled out ("" when it is not an http(s) URL).

    Credentials are bound to the origins they were entered for; a changed origin means entering them again.
    """
    try:
        parts = urlsplit(str(url).strip())
        port = parts.port
    except ValueError:
        return ""
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        return ""
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port or (443 if scheme == 'https' else 80)}"


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
