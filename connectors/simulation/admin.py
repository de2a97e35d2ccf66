"""The client side of a simulator's admin endpoints (`__admin/<action>`), for a process other than the
one running it (management commands, demos, end-to-end tests): one POST that trusts the simulator's
CA bundle and turns a refusal or a silence into `SimulatorAdminError` with the simulator's message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests


class SimulatorAdminError(Exception):
    """A simulator's admin endpoint refused the call (unknown ticket, bad state...) or did not answer."""


def admin_post(description: Mapping[str, Any], action: str, payload: Mapping[str, Any]) -> Any:
    """Call a running simulator's admin endpoint (`__admin/<action>`) from another process.

    `description` is the simulator's `describe()` (e.g. from `simulators status --json`); its CA bundle
    is trusted for the https simulators. Raises `SimulatorAdminError` with the simulator's message.
    """
    url = f"{description['base_url']}/__admin/{action}"
    verify: str | bool = description.get("ca_bundle") or True
    try:
        response = requests.post(url, json=dict(payload), timeout=30, verify=verify)
    except requests.RequestException as exc:
        raise SimulatorAdminError(f"{url} did not answer: {type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        message = body.get("error") if isinstance(body, dict) else None
        raise SimulatorAdminError(str(message or f"HTTP {response.status_code}"))
    return body
