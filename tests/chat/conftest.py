"""Channels and API keys of tenants A and B, for every chat test.

`api_key_a` / `api_key_b` are `IssuedKey`s: the ApiKey row, its plaintext (shown once in production) and the
test-client header that sends it, e.g. `client.post(url, data, content_type=..., **api_key_a.headers)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from apps.chat.models import Action, ApiKey, ApiKeyScope, Channel
from apps.chat.services.channels import api_key_create, channel_create
from apps.integrations.models import Connection
from apps.tenants.models import Tenant
from connectors.salesforce.simulator import SalesforceSimulator
from tests.outbox.conftest import TINY
from tests.sync.conftest import sf_connection


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    plaintext: str

    @property
    def headers(self) -> dict[str, Any]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.plaintext}"}


def issue_key(channel: Channel, *, name: str = "test key", **kwargs: Any) -> IssuedKey:
    kwargs.setdefault("scopes", [ApiKeyScope.CHAT, ApiKeyScope.TRANSCRIPTS])
    key, plaintext = api_key_create(channel=channel, name=name, **kwargs)
    return IssuedKey(key=key, plaintext=plaintext)


@pytest.fixture
def channel_a(tenant_a: Tenant) -> Channel:
    """Tenant A's web channel, every action allowed."""
    return channel_create(tenant=tenant_a, name="Website", kind="web", allowed_actions=Action.values)


@pytest.fixture
def channel_b(tenant_b: Tenant) -> Channel:
    """Tenant B's web channel, every action allowed."""
    return channel_create(tenant=tenant_b, name="Website", kind="web", allowed_actions=Action.values)


@pytest.fixture
def api_key_a(channel_a: Channel) -> IssuedKey:
    """A key of tenant A's channel with the chat and transcripts scopes."""
    return issue_key(channel_a)


@pytest.fixture
def api_key_b(channel_b: Channel) -> IssuedKey:
    """A key of tenant B's channel with the chat and transcripts scopes."""
    return issue_key(channel_b)


@pytest.fixture
def api_client() -> Client:
    """A client with no session: the chat API is called with API keys only."""
    return Client()


@pytest.fixture
def sf(tmp_path: Path, settings: Any) -> Iterator[SalesforceSimulator]:
    """A small Salesforce simulator for the chat's ticket and lead actions."""
    sim = SalesforceSimulator(state_dir=tmp_path, counts=TINY).start()
    settings.HUB_CONNECTOR_CA_BUNDLE = sim.ca_bundle
    yield sim
    sim.stop()


@pytest.fixture
def sf_conn(tenant_a: Tenant, sf: SalesforceSimulator) -> Connection:
    """Tenant A's Salesforce connection to `sf`."""
    return sf_connection(tenant_a, sf)
