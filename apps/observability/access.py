"""The client's address behind trusted proxies, and who may read `/metrics`.

`client_address` is the one place that turns a request into the address of the client that sent it: the
login lockout, the webhook rate buckets, the audit log and the `/metrics` allow-list all count by it.

`/metrics` needs a bearer token (HUB_METRICS_TOKEN) and/or an address in an allow-list (HUB_METRICS_ALLOW).
Each configured check must pass. With neither configured (production refuses to start that way) only
loopback may scrape.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal

from django.conf import settings

LOOPBACK = ("127.0.0.0/8", "::1/128")

Verdict = Literal["ok", "unauthorized", "forbidden"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@cache
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def _parse_address(text: str) -> IPAddress | None:
    """An address as a proxy writes it ("192.0.2.1", "192.0.2.1:5000", "[2001:db8::1]:443"), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_address(meta: Mapping[str, Any]) -> str:
    """Return the address of the client that sent a request (its `request.META` or WSGI environ).

    Without trusted proxies (the default) that is REMOTE_ADDR, whatever X-Forwarded-For says. Behind
    proxies, X-Forwarded-For is read from the right, the entries the trusted proxies appended: the peer
    is trusted if it is one of the HUB_TRUSTED_PROXY_COUNT nearest hops or in HUB_TRUSTED_PROXIES, and the
    first untrusted address is the client. Entries left of it are whatever the client wrote and never
    count, so a client cannot pick the address it is counted under. "unknown" when there is no address.
    """
    client = _parse_address(str(meta.get("REMOTE_ADDR") or ""))
    if client is None:
        return "unknown"
    hops: int = settings.HUB_TRUSTED_PROXY_COUNT
    networks = _networks(tuple(settings.HUB_TRUSTED_PROXIES))
    forwarded = [entry for entry in str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",") if entry.strip()]
    position = 0  # hops away from us: 0 is the direct peer
    while forwarded and (position < hops or any(client in network for network in networks)):
        previous = _parse_address(forwarded.pop())
        if previous is None:  # a trusted proxy never writes garbage: stop at the last address we can trust
            break
        client = previous
        position += 1
    return str(client)


def address_allowed(address: str, networks: tuple[str, ...]) -> bool:
    ip = _parse_address(address)
    return ip is not None and any(ip in network for network in _networks(networks))


def check_scraper(*, authorization: str, address: str) -> Verdict:
    """Return "ok", "unauthorized" (token missing or wrong) or "forbidden" (address not allowed)."""
    token: str = settings.HUB_METRICS_TOKEN
    allow = tuple(settings.HUB_METRICS_ALLOW)
    if not token and not allow:
        allow = LOOPBACK
    if allow and not address_allowed(address, allow):
        return "forbidden"
    if token:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return "unauthorized"
    return "ok"
