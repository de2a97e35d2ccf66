"""Scrape helpers and a fresh Salesforce simulator per test for the observability tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from connectors.salesforce.simulator import SalesforceSimulator

#: The metric families of the issue-9 contract (alert rules and the Grafana dashboard are built on them).
CATALOG = {
    "hub_http_request_duration_seconds",
    "hub_chat_turns_total",
    "hub_chat_turn_duration_seconds",
    "hub_retrieval_duration_seconds",
    "hub_llm_tokens_total",
    "hub_llm_cost_usd_total",
    "hub_sync_records_total",
    "hub_sync_lag_seconds",
    "hub_vendor_request_duration_seconds",
    "hub_vendor_errors_total",
    "hub_rate_limit_hits_total",
    "hub_breaker_state",
    "hub_outbox_depth",
    "hub_dead_letters",
    "hub_celery_queue_depth",
    "hub_celery_task_duration_seconds",
}

SMALL = {"contacts": 50, "accounts": 5, "tickets": 5, "orders": 5, "articles": 5, "leads": 0}


def scrape(client: Client | None = None, **extra: Any) -> dict[str, list[Sample]]:
    """GET /metrics (from loopback unless `extra` says otherwise) and return family name -> samples."""
    response = (client or Client()).get("/metrics", **extra)
    assert response.status_code == 200, response.content
    families: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        # The parser names counters without "_total"; the catalog (METRIC_FAMILIES) names them with it.
        name = f"{family.name}_total" if family.type == "counter" else family.name
        families[name] = list(family.samples)
    return families


def value(families: dict[str, list[Sample]], sample_name: str, **labels: str) -> float:
    """The value of one sample (0.0 when it does not exist yet), matching the given labels."""
    family = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    for name in (family, f"{family}_total", sample_name):
        for sample in families.get(name, []):
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.fixture(scope="session")
def obs_sim_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("observability-simulators")


@pytest.fixture
def sf(obs_sim_state: Path, settings: Any) -> Iterator[SalesforceSimulator]:
    sim = SalesforceSimulator(state_dir=obs_sim_state, counts=SMALL).start()
    settings.HUB_CONNECTOR_CA_BUNDLE = sim.ca_bundle
    yield sim
    sim.stop()
