"""SAP SOAP (ZHUB_BUPA) simulator fidelity: errors as SAP sends them, driven by zeep with the shipped WSDL."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import zeep
from lxml import etree
from zeep.exceptions import Fault, TransportError
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from connectors.errors import ConnectorError, VendorUnavailable
from connectors.sap.connector import BINDING, WSDL, SapConnector
from connectors.sap.simulator import NS, SapSimulator
from connectors.testing import simulator_session
from tests.fixtures.simulators import StartSimulator

COUNTS = {"contacts": 30, "accounts": 10, "tickets": 0, "orders": 20, "articles": 0, "leads": 0}


@pytest.fixture(scope="module")
def sim(session_simulator: StartSimulator) -> SapSimulator:
    return session_simulator(SapSimulator, counts=COUNTS)


def client(sim: SapSimulator, *, auth: tuple[str, str] | None = None, wsse: bool = False) -> Any:
    session = requests.Session()
    session.trust_env = False
    credentials = auth or (sim.username, sim.password)
    if wsse:
        wsdl_client = zeep.Client(
            str(WSDL), transport=Transport(session=session), wsse=UsernameToken(*credentials)
        )
    else:
        session.auth = credentials
        wsdl_client = zeep.Client(str(WSDL), transport=Transport(session=session))
    return wsdl_client, wsdl_client.create_service(BINDING, sim.describe()["endpoint_url"])


@pytest.mark.parametrize("operation", ["Z_HUB_BUPA_GET_CHANGED", "Z_HUB_SALESORDER_GET_CHANGED"])
def test_function_module_exception_is_a_fault_with_the_declared_detail(
    sim: SapSimulator, operation: str
) -> None:
    wsdl_client, service = client(sim)
    with pytest.raises(Fault) as info:
        getattr(service, operation)(IV_SINCE_DATE="2024-13-45")
    fault = info.value
    assert (fault.code, fault.message) == ("soap-env:Client", "INVALID_SINCE")
    detail = wsdl_client.get_element(f"{{{NS}}}{operation}.Exception").parse(
        fault.detail[0], wsdl_client.wsdl.types
    )
    assert detail.Name == "INVALID_SINCE"
    assert "2024-13-45" in detail.Text
    assert (detail.Message.ID, detail.Message.Number) == ("ZHUB", "001")
    with pytest.raises(Fault) as rows:
        getattr(service, operation)(IV_MAX_ROWS=0)
    assert rows.value.message == "INVALID_MAX_ROWS"


def test_wsdl_declares_the_faults(sim: SapSimulator) -> None:
    wsdl_client, _service = client(sim)
    binding = wsdl_client.wsdl.bindings[BINDING]
    assert set(binding._operations["Z_HUB_BUPA_GET_CHANGED"].faults) == {"Z_HUB_BUPA_GET_CHANGED.Exception"}
    served = etree.fromstring(requests.get(sim.describe()["wsdl_url"], timeout=5).content)
    faults = served.findall(".//{http://schemas.xmlsoap.org/wsdl/}fault")
    assert {f.get("name") for f in faults} == {
        "Z_HUB_BUPA_GET_CHANGED.Exception",
        "Z_HUB_SALESORDER_GET_CHANGED.Exception",
    }


def test_not_found_and_validation_are_return_rows(sim: SapSimulator) -> None:
    _c, service = client(sim)
    missing = service.BAPI_SALESORDER_GETSTATUS(SALESDOCUMENT="99999999")
    assert [(r.TYPE, r.ID, r.NUMBER) for r in missing.RETURN.item] == [("E", "V1", "302")]
    assert missing.STATUSINFO is None or not missing.STATUSINFO.item
    unknown = service.BAPI_BUPA_GET_NUMBERS(BUSINESSPARTNEREXTERN="NO-SUCH-PARTNER")
    assert [(r.TYPE, r.NUMBER) for r in unknown.RETURN.item] == [("E", "003")]
    changed = service.BAPI_BUPA_CENTRAL_CHANGE(BUSINESSPARTNER="0009999999", DATA={"LASTNAME": "x"})
    assert [(r.TYPE, r.NUMBER) for r in changed] == [("E", "003")]  # zeep unwraps the single RETURN
    invalid = service.BAPI_BUPA_CREATE_FROM_DATA(
        PARTNERCATEGORY="1", PARTNEREXTERNAL="", DATA={"FIRSTNAME": "x"}
    )
    assert [(r.TYPE, r.ID, r.NUMBER, r.MESSAGE) for r in invalid.RETURN.item] == [
        ("E", "R11", "401", "Enter a last name")
    ]
    category = service.Z_HUB_BUPA_GET_CHANGED(IV_CATEGORY="9")
    assert category.RETURN.item[0].TYPE == "E"


@pytest.mark.parametrize("wsse", [False, True])
def test_wrong_credentials_are_a_401_transport_error(sim: SapSimulator, wsse: bool) -> None:
    _c, service = client(sim, auth=(sim.username, "wrong-password"), wsse=wsse)
    with pytest.raises(TransportError) as info:
        service.Z_HUB_BUPA_GET_CHANGED(IV_MAX_ROWS=1)
    assert info.value.status_code == 401
    assert b"wrong-password" not in (info.value.content or b"")


def test_technical_errors_are_server_faults(sim: SapSimulator) -> None:
    _c, service = client(sim)
    sim.inject(errors=[{"status": 500, "count": 1}])
    try:
        with pytest.raises(Fault) as info:
            service.Z_HUB_BUPA_GET_CHANGED(IV_MAX_ROWS=1)
    finally:
        sim.clear_faults()
    assert info.value.code == "soap-env:Server"
    assert "transaction" in info.value.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<not-xml", "XML parse error"),
        (b'<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body/>'
         b"</soap-env:Envelope>", "SOAP body is empty"),
        (b'<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body>'
         b'<n0:Z_NO_SUCH xmlns:n0="urn:sap-com:document:sap:rfc:functions"/>'
         b"</soap-env:Body></soap-env:Envelope>",
         "Function module Z_NO_SUCH not found"),
    ],
)  # fmt: skip
def test_malformed_requests_are_client_faults(sim: SapSimulator, body: bytes, message: str) -> None:
    response = requests.post(
        sim.describe()["endpoint_url"], data=body, auth=(sim.username, sim.password), timeout=5,
        headers={"Content-Type": "text/xml; charset=utf-8"},
    )  # fmt: skip
    assert response.status_code == 500
    fault = etree.fromstring(response.content).find(".//{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "soap-env:Client"
    assert message in (fault.findtext("faultstring") or "")


def test_connector_maps_function_module_exceptions_as_permanent(sim: SapSimulator) -> None:
    config = {
        "endpoint_url": sim.describe()["endpoint_url"],
        "username": sim.username,
        "password": sim.password,
    }
    conn = SapConnector(config, session=simulator_session(sim))
    with pytest.raises(ConnectorError) as info:
        conn._call("Z_HUB_BUPA_GET_CHANGED", IV_SINCE_DATE="not-a-date")
    assert not isinstance(info.value, VendorUnavailable)
    assert info.value.permanent
    assert info.value.code == "INVALID_SINCE"
    assert str(info.value).startswith("SAP Z_HUB_BUPA_GET_CHANGED raised INVALID_SINCE: not-a-date")
