"""Framework pieces that need no simulator: cursor, config, registry, HTTP guard and signal parsing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from connectors.base import Connector, Cursor, Record
from connectors.errors import AddressNotAllowed, InvalidConfig, UnknownConnectorKind
from connectors.http import (
    hubspot_limit,
    make_session,
    parse_retry_after,
    redact,
    safe_url,
    salesforce_limit,
    servicenow_limit,
)
from connectors.registry import DEFAULT_CONNECTORS, get_connector_class, load_registry
from connectors.simulators import down, start_all, status, stop_all, up

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def rec(external_id: str, when: datetime) -> Record:
    return Record(external_id, when, {}, {})


def test_cursor_ties_and_round_trip() -> None:
    later = T0.replace(second=1)
    cursor = Cursor().advance(rec("a", T0)).advance(rec("b", T0))
    assert cursor.covers(rec("a", T0))
    assert not cursor.covers(rec("c", T0))
    assert not cursor.covers(rec("a", later))
    moved = cursor.advance(rec("z", later))
    assert moved == Cursor(later, frozenset({"z"}))
    assert Cursor.from_json(moved.to_json()) == moved
    assert Cursor.from_json(None) == Cursor()


def test_registry_loads_every_connector_and_rejects_bad_paths() -> None:
    registry = load_registry()
    vendors = ["dynamics365", "hubspot", "salesforce", "sap", "sap_odata", "servicenow"]
    assert sorted(registry) == sorted([*vendors, "slack", "sms", "teams", "whatsapp"])
    with pytest.raises(UnknownConnectorKind, match="Unknown connector kind 'zendesk'"):
        get_connector_class("zendesk", registry=registry)
    with pytest.raises(InvalidConfig, match="not a subclass"):
        load_registry(["connectors.errors.ConnectorError"])
    with pytest.raises(InvalidConfig, match="Cannot import"):
        load_registry(["connectors.nope.Thing"])
    with pytest.raises(InvalidConfig, match="registered twice"):
        load_registry([DEFAULT_CONNECTORS[0], DEFAULT_CONNECTORS[0]])
    assert issubclass(get_connector_class("sap", registry=registry), Connector)


def test_redacted_config_blanks_sensitive_fields() -> None:
    cls = get_connector_class("servicenow", registry=load_registry())
    shown = cls.redacted_config({"instance_url": "https://x", "password": "s3cret!"})
    assert shown == {"instance_url": "https://x", "password": "********"}


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3/x", "http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]/"]
)
def test_private_addresses_are_refused_unless_allow_listed(url: str) -> None:
    with pytest.raises(AddressNotAllowed):
        make_session().get(url)


def test_redaction() -> None:
    assert redact("https://h/p?access_token=abc123&x=1") == "https://h/p?access_token=***&x=1"
    assert redact("Bearer tok-XYZ failed", {"tok-XYZ"}) == "Bearer *** failed"
    assert safe_url("https://user:pw@host:8443/a?password=p") == "https://host:8443/a?password=***"
    session = make_session()
    session.add_secret("hunter22")
    assert "hunter22" not in session.redact("login hunter22 refused")


def response(status: int, body: bytes, **headers: str) -> requests.Response:
    r = requests.Response()
    r.status_code, r._content = status, body
    r.headers.update(headers)
    return r


def test_vendor_rate_limit_signals() -> None:
    sf = salesforce_limit(response(403, b'[{"message":"x","errorCode":"REQUEST_LIMIT_EXCEEDED"}]'))
    assert sf is not None
    assert (sf.scope, sf.retry_after) == ("daily", 3600.0)
    assert salesforce_limit(response(403, b'[{"errorCode":"INSUFFICIENT_ACCESS"}]')) is None
    hs = hubspot_limit(response(429, b'{"policyName":"TEN_SECONDLY_ROLLING"}',
                                **{"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}))  # fmt: skip
    assert hs is not None
    assert (hs.scope, hs.retry_after) == ("ten_secondly", 10.0)
    sn = servicenow_limit(response(429, b"{}", **{"Retry-After": "120", "X-RateLimit-Rule": "r1"}))
    assert sn is not None
    assert (sn.retry_after, sn.code) == (120.0, "r1")
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now=T0) == 30.0


def test_start_all_in_process(tmp_path: Path) -> None:
    small = {"contacts": 10, "accounts": 10, "tickets": 10, "orders": 10, "articles": 5}
    described = start_all(tmp_path, counts=small)
    try:
        assert sorted(described) == [
            "dynamics365",
            "hubspot",
            "oidc",
            "salesforce",
            "saml",
            "sap",
            "sap_odata",
            "servicenow",
            "slack",
            "teams",
            "twilio",
            "whatsapp",
        ]
        assert described["salesforce"]["base_url"].startswith("https://127.0.0.1:")
        assert described["sap"]["wsdl_url"].endswith("?wsdl")
        assert requests.get(described["sap"]["wsdl_url"], timeout=5).status_code == 200
    finally:
        stop_all(tmp_path)


def test_background_process_up_status_down(tmp_path: Path) -> None:
    small = {"contacts": 10, "accounts": 10, "tickets": 10, "orders": 10, "articles": 5}
    described = up(tmp_path, counts=small)
    try:
        state = status(tmp_path)
        assert state["running"]
        assert state["simulators"] == described
        token = requests.post(
            described["servicenow"]["base_url"] + "/api/now/table/incident",
            auth=(described["servicenow"]["username"], described["servicenow"]["password"]),
            json={"short_description": "hello"},
            timeout=5,
        )
        assert token.status_code == 201
    finally:
        assert down(tmp_path)
    assert not status(tmp_path)["running"]
