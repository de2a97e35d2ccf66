"""SAP: conformance suite, zeep with the shipped WSDL against the simulator, RETURN and fault mapping."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
import zeep
from zeep.transports import Transport

from connectors.errors import AuthFailed, ConnectorError, InvalidConfig, VendorUnavailable
from connectors.sap.connector import BINDING, WSDL, SapConnector
from connectors.sap.simulator import SapSimulator
from connectors.simulation import Simulator
from connectors.testing import ConnectorConformance, assert_no_secrets, simulator_session


def sap_config(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    d = sim.describe()
    return {
        "endpoint_url": d["endpoint_url"],
        "username": d["username"],
        "password": d["password"],
        **overrides,
    }


class TestSapConformance(ConnectorConformance):
    connector_class = SapConnector
    read_stream = "contacts"
    write_stream = "contacts"
    page_size = 100
    read_operation = "Z_HUB_BUPA_GET_CHANGED"
    expected_rate_limit = (7.0, "gateway")
    token_auth = False
    reads_retry_transient = False  # SOAP calls are POSTs

    @pytest.fixture
    def simulator(self, sap_sim: SapSimulator) -> SapSimulator:
        return sap_sim

    def config(self, simulator: Simulator, **overrides: Any) -> dict[str, Any]:
        return sap_config(simulator, **overrides)

    def bad_credentials(self, simulator: Simulator) -> dict[str, Any]:
        return sap_config(simulator, password="wrong-password")

    def write_records(self, count: int, tag: str) -> list[dict[str, Any]]:
        return [{"external_id": f"H{tag}{i}", "fields": {"last_name": f"Müller {i}", "country": "DE"}}
                for i in range(count)]  # fmt: skip


@pytest.fixture(scope="module")
def zeep_service(sap_sim: SapSimulator) -> Any:
    session = requests.Session()
    session.auth = (sap_sim.username, sap_sim.password)
    client = zeep.Client(str(WSDL), transport=Transport(session=session))
    return client.create_service(BINDING, sap_sim.describe()["endpoint_url"])


def test_zeep_calls_operations_from_shipped_wsdl(zeep_service: Any) -> None:
    page = zeep_service.Z_HUB_BUPA_GET_CHANGED(IV_CATEGORY="2", IV_MAX_ROWS=50)
    assert len(page.ET_PARTNERS.item) == 50
    assert page.EV_MORE == "X"
    assert page.ET_PARTNERS.item[0].NAME_ORG1
    status = zeep_service.BAPI_SALESORDER_GETSTATUS(SALESDOCUMENT="42")
    assert status.STATUSINFO.item[0].SALESDOCUMENT == "0000000042"
    missing = zeep_service.BAPI_SALESORDER_GETSTATUS(SALESDOCUMENT="99999999")
    assert missing.RETURN.item[0].TYPE == "E"
    ext = f"Z{uuid.uuid4().hex[:8]}"
    created = zeep_service.BAPI_BUPA_CREATE_FROM_DATA(PARTNERCATEGORY="2", PARTNEREXTERNAL=ext,
                                                      DATA={"NAME_ORG1": "Größer AG"})  # fmt: skip
    assert created.RETURN.item[0].TYPE == "S"
    assert (
        zeep_service.BAPI_BUPA_GET_NUMBERS(BUSINESSPARTNEREXTERN=ext).BUSINESSPARTNEROUT
        == created.BUSINESSPARTNER
    )


def test_wsdl_served_with_local_address(sap_sim: SapSimulator) -> None:
    text = requests.get(sap_sim.describe()["wsdl_url"], timeout=5).text
    assert sap_sim.describe()["endpoint_url"] in text


def test_return_type_e_becomes_connector_error(sap_sim: SapSimulator) -> None:
    conn = SapConnector(sap_config(sap_sim), session=simulator_session(sap_sim))
    result = conn.write("accounts", [{"external_id": "NONAME", "fields": {"country": "FR"}}])
    assert result.failed[0].error == "SAP R11/401: Enter a name for the organization"
    with pytest.raises(ConnectorError, match="Sales document 0000999999 is not in the database") as info:
        conn._call("BAPI_SALESORDER_GETSTATUS", SALESDOCUMENT="999999")
    assert info.value.permanent
    assert info.value.code == "V1/302"


def test_soap_fault_maps_to_vendor_unavailable(sap_sim: SapSimulator) -> None:
    conn = SapConnector(sap_config(sap_sim), session=simulator_session(sap_sim))
    sap_sim.inject(errors=[{"status": 500, "count": 1}])
    try:
        with pytest.raises(
            VendorUnavailable,
            match=r"SAP SOAP fault in Z_HUB_BUPA_GET_CHANGED: Injected failure \(transaction [0-9A-F]{16}\)",
        ):
            conn.check_connection()
    finally:
        sap_sim.clear_faults()


def test_ws_security_username_token(sap_sim: SapSimulator) -> None:
    conn = SapConnector(sap_config(sap_sim, auth="ws_security"), session=simulator_session(sap_sim))
    conn.check_connection()
    bad = SapConnector(
        sap_config(sap_sim, auth="ws_security", password="nope-nope"), session=simulator_session(sap_sim)
    )
    with pytest.raises(AuthFailed):
        bad.check_connection()


@pytest.mark.parametrize("kind", ["truncated", "garbage", "missing", "wrong_type"])
def test_ws_security_password_never_in_errors(sap_sim: SapSimulator, kind: str) -> None:
    """With UsernameToken the password travels in the SOAP body, and the garbage page echoes that body."""
    conn = SapConnector(sap_config(sap_sim, auth="ws_security"), session=simulator_session(sap_sim))
    sap_sim.inject(malformed={"kind": kind})
    try:
        with pytest.raises(ConnectorError) as info:
            conn.check_connection()
    finally:
        sap_sim.clear_faults()
    assert_no_secrets(info.value, {"password": sap_sim.password})


def test_orders_read_and_read_only(sap_sim: SapSimulator) -> None:
    conn = SapConnector(sap_config(sap_sim, page_size=250), session=simulator_session(sap_sim))
    orders = list(conn.read("orders"))
    assert len(orders) == sap_sim.count("orders")
    assert orders[0].fields["number"] == orders[0].external_id


def test_field_map_checked_against_wsdl(sap_sim: SapSimulator) -> None:
    with pytest.raises(InvalidConfig, match="KUNNR"):
        SapConnector(
            sap_config(sap_sim, field_map={"accounts": {"name": "KUNNR"}}), session=simulator_session(sap_sim)
        )
