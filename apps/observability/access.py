"""Who may read `/metrics`: a bearer token (HUB_METRICS_TOKEN) and/or an allow-list (HUB_METRICS_ALLOW).

Each configured check must pass. With neither configured (production refuses to start that way) only
loopback may scrape. The address checked is the direct peer (REMOTE_ADDR): a scraper reaches the pods, not
the public load balancer, so a forwarded-for header would only let a client pick its own address.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import cache
from typing import Literal

from django.conf import settings

LOOPBACK = ("127.0.0.0/8", "::1/128")

Verdict = Literal["ok", "unauthorized", "forbidden"]


@cache
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def address_allowed(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(networks))


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
