"""Connector settings resolved once, in one place: the registry, the outbound allow-list, the trust bundle."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import requests.certs
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.core.outbound import outbound_allow_hosts
from connectors.base import Connector
from connectors.errors import InvalidConfig
from connectors.http import HttpSession, make_session, url_origin
from connectors.registry import get_connector_class, load_registry


@cache
def _registry(paths: tuple[str, ...]) -> dict[str, type[Connector]]:
    try:
        return load_registry(paths)
    except InvalidConfig as exc:
        raise ImproperlyConfigured(f"Setting HUB_CONNECTORS: {exc}") from exc


def connector_registry() -> dict[str, type[Connector]]:
    """Return kind -> connector class from settings.HUB_CONNECTORS (imported once per process)."""
    return _registry(tuple(settings.HUB_CONNECTORS))


def connector_class(kind: str) -> type[Connector]:
    return get_connector_class(kind, registry=connector_registry())


def endpoint_origins(kind: str, settings: Mapping[str, Any]) -> list[str]:
    """The origins a connection of `kind` with `settings` sends its credentials to (its URL fields)."""
    origins = {
        url_origin(settings.get(f.name) or f.default or "")
        for f in connector_class(kind).config_schema
        if f.url and not f.secret
    }
    return sorted(origins - {""})


def allow_hosts() -> tuple[str, ...]:
    """Hosts the SSRF guard lets through although private (apps.core.outbound decides for everyone)."""
    return outbound_allow_hosts()


def simulators_state_dir() -> Path:
    """Where `manage.py simulators` keeps its pid, descriptions and local CA."""
    return Path(settings.HUB_HOME) / "simulators"


def ca_bundle() -> str | None:
    """The trust bundle for vendor TLS.

    An explicit HUB_CONNECTOR_CA_BUNDLE wins (and must exist). Otherwise production uses the system trust;
    dev and test trust the system CAs plus the local simulators' CA, so real vendors and the simulators both
    verify without turning verification off.
    """
    configured = settings.HUB_CONNECTOR_CA_BUNDLE
    if configured:
        if not Path(configured).is_file():
            raise ImproperlyConfigured(f"Setting HUB_CONNECTOR_CA_BUNDLE: no file at {configured}")
        return str(configured)
    if settings.HUB_ENV == "production":
        return None
    simulator_ca = simulators_state_dir() / "tls" / "ca.pem"
    if not simulator_ca.is_file():
        return None
    combined = simulator_ca.with_name("trust.pem")
    system = Path(requests.certs.where())
    if not combined.is_file() or combined.stat().st_mtime < simulator_ca.stat().st_mtime:
        tmp = combined.with_suffix(".tmp")
        tmp.write_bytes(system.read_bytes() + b"\n" + simulator_ca.read_bytes())
        tmp.replace(combined)
    return str(combined)


def connector_session() -> HttpSession:
    """Build the outbound session every connection uses (timeouts, SSRF guard, redaction, trust, https)."""
    return make_session(
        allow_hosts=allow_hosts(),
        ca_bundle=ca_bundle(),
        require_https=settings.HUB_OUTBOUND_REQUIRE_HTTPS,
    )


def build_connector(connection: Any, *, session: HttpSession | None = None) -> Connector:
    """Instantiate the connection's connector with the hub's outbound session (guard, trust, redaction)."""
    config = connection.connector_config()
    return connector_class(connection.kind)(config, session=session or connector_session())
