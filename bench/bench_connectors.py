"""Connector read throughput against each vendor simulator: the connector's full `read("contacts")` vs raw
paging with the vendor's own client (or plain requests) in the same run, so the framework's cost shows.

Each simulator runs in its own process (spawned, not forked), so it does not share the GIL with the
client being measured. Loopback only; the numbers compare code paths, not vendors' real latency.
"""

from __future__ import annotations

import calendar
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event
from typing import Any

import pyodata
import requests
import zeep
from hubspot import HubSpot
from simple_salesforce import Salesforce
from zeep.transports import Transport

from connectors.base import Connector, Cursor
from connectors.dynamics.connector import DynamicsConnector
from connectors.http import make_session
from connectors.hubspot.connector import HubSpotConnector
from connectors.salesforce.connector import SalesforceConnector
from connectors.sap.connector import BINDING, WSDL, SapConnector
from connectors.sap_odata.connector import SapODataConnector
from connectors.servicenow.connector import ServiceNowConnector
from connectors.simulators import simulator_class

CONTACTS = 20_000
REPEATS = 3
SMALL = {"accounts": 50, "tickets": 50, "orders": 50, "articles": 5, "leads": 0}


# --- one simulator per process -------------------------------------------------------------------


def _serve(vendor: str, state_dir: str, counts: dict[str, int], out: Any, stop: Event) -> None:
    sim = simulator_class(vendor)(state_dir=state_dir, counts=counts).start()
    out.put(sim.describe())
    stop.wait()
    sim.stop()


@contextmanager
def simulator_process(vendor: str, contacts: int) -> Iterator[dict[str, Any]]:
    """Run `vendor`'s simulator seeded with `contacts` contacts in a child process; yield its description."""
    ctx = multiprocessing.get_context("spawn")
    out, stop = ctx.Queue(), ctx.Event()
    with tempfile.TemporaryDirectory(prefix=f"bench-{vendor}-") as state_dir:
        counts = {**SMALL, "contacts": contacts}
        proc = ctx.Process(target=_serve, args=(vendor, state_dir, counts, out, stop), daemon=True)
        proc.start()
        try:
            yield out.get(timeout=120)
        finally:
            stop.set()
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()


def _session(description: dict[str, Any]) -> Any:
    return make_session(allow_hosts=["127.0.0.1"], ca_bundle=description["ca_bundle"], timeout=(5.0, 60.0))


def _measure(read: Callable[[], int], expected: int) -> dict[str, Any]:
    """Run `read` REPEATS times; report the median records/s (each run must see every record)."""
    rates = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        count = read()
        elapsed = time.perf_counter() - started
        if count != expected:
            raise RuntimeError(f"read {count} records, expected {expected}")
        rates.append(count / elapsed)
    return {"records_per_s": round(statistics.median(rates)), "runs": [round(r) for r in rates]}


def _connector_read(connector: Connector) -> Callable[[], int]:
    return lambda: sum(1 for _ in connector.read("contacts", cursor=Cursor()))


# --- raw paging with each vendor's own client --------------------------------------------------------


def _salesforce(d: dict[str, Any]) -> tuple[Connector, dict[str, Callable[[], int]]]:
    config = {"login_url": d["login_url"], "client_id": d["client_id"], "client_secret": d["client_secret"]}
    connector = SalesforceConnector(config, session=_session(d))
    session = requests.Session()
    session.verify, session.trust_env = d["ca_bundle"], False
    token = session.post(
        d["login_url"] + "/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": d["client_id"],
              "client_secret": d["client_secret"]},
    ).json()  # fmt: skip
    sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=session)
    # The same columns and order the connector asks for, so both move the same bytes.
    fields = ", ".join(connector._select("contacts"))
    soql = f"SELECT {fields} FROM Contact ORDER BY SystemModstamp, Id"  # noqa: S608 - constant names

    def raw() -> int:
        return sum(1 for _ in sf.query_all_iter(soql, include_deleted=True))

    return connector, {"simple_salesforce_query_all_iter": raw}


def _hubspot(d: dict[str, Any]) -> tuple[Connector, dict[str, Callable[[], int]]]:
    connector = HubSpotConnector(
        {"base_url": d["base_url"], "access_token": d["private_app_token"]}, session=_session(d)
    )
    client = HubSpot(access_token=d["private_app_token"], host=d["base_url"])
    properties = list(connector.field_map["contacts"].values())
    headers = {"Authorization": f"Bearer {d['private_app_token']}"}
    http = requests.Session()

    def get_all() -> int:
        """The official client's list paging (100 per page, typed models)."""
        return len(client.crm.contacts.get_all(properties=properties))

    def search() -> int:
        """What the connector does on the wire (search by lastmodifieddate, 200 per page), with requests;
        like the connector, restart from the last value seen at the 10,000-result search cap."""
        seen: set[str] = set()
        since, after, last = "0", None, "0"
        while True:
            query: dict[str, Any] = {
                "filterGroups": [
                    {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": since}]}
                ],
                "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                "properties": ["lastmodifieddate", *properties],
                "limit": 200,
            }
            if after:
                query["after"] = after
            page = http.post(
                d["base_url"] + "/crm/v3/objects/contacts/search", json=query, headers=headers, timeout=60
            ).json()
            for row in page["results"]:
                seen.add(row["id"])
                last = row["updatedAt"]
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return len(seen)
            if int(after) + 200 > 10_000:
                since, after = last, None

    return connector, {"hubspot_api_client_get_all": get_all, "requests_search": search}


def _servicenow(d: dict[str, Any]) -> tuple[Connector, dict[str, Callable[[], int]]]:
    config = {"instance_url": d["instance_url"], "username": d["username"], "password": d["password"]}
    connector = ServiceNowConnector(config, session=_session(d))
    http = requests.Session()
    http.auth = (d["username"], d["password"])
    fields = ",".join(["sys_id", "sys_updated_on", *connector.field_map["contacts"].values()])

    def raw() -> int:
        """Offset paging by the Link header, as the card describes (fine on a table nobody writes to)."""
        count = 0
        url: str | None = d["instance_url"] + "/api/now/table/customer_contact"
        params: dict[str, Any] | None = {
            "sysparm_query": "ORDERBYsys_updated_on^ORDERBYsys_id",
            "sysparm_limit": 1000,
            "sysparm_fields": fields,
            "sysparm_exclude_reference_link": "true",
        }
        while url:
            response = http.get(url, params=params, timeout=60)
            count += len(response.json()["result"])
            url, params = response.links.get("next", {}).get("url"), None
        return count

    def keyset() -> int:
        """The connector's own keyset queries on (sys_updated_on, sys_id), with requests and no mapping."""
        count, order = 0, "^ORDERBYsys_updated_on^ORDERBYsys_id"
        query = order.lstrip("^")
        while True:
            params: dict[str, Any] = {"sysparm_query": query, "sysparm_limit": 1000, "sysparm_fields": fields,
                                      "sysparm_exclude_reference_link": "true"}  # fmt: skip
            response = http.get(
                d["instance_url"] + "/api/now/table/customer_contact", params=params, timeout=60
            )
            rows = response.json()["result"]
            count += len(rows)
            if not rows or "next" not in response.links:
                return count
            ts, key = rows[-1]["sys_updated_on"], rows[-1]["sys_id"]
            query = f"sys_updated_on>{ts}^NQsys_updated_on={ts}^sys_id>{key}{order}"

    return connector, {"requests_link_paging": raw, "requests_keyset": keyset}


def _sap(d: dict[str, Any]) -> tuple[Connector, dict[str, Callable[[], int]]]:
    config = {"endpoint_url": d["endpoint_url"], "username": d["username"], "password": d["password"]}
    connector = SapConnector(config, session=_session(d))
    http = requests.Session()
    http.auth = (d["username"], d["password"])
    service = zeep.Client(str(WSDL), transport=Transport(session=http)).create_service(
        BINDING, d["endpoint_url"]
    )

    def raw() -> int:
        """The same keyset calls (500 rows each) with zeep and no mapping."""
        count, date, tm, after = 0, "1970-01-01", "00:00:00", ""
        while True:
            page = service.Z_HUB_BUPA_GET_CHANGED(
                IV_CATEGORY="1", IV_SINCE_DATE=date, IV_SINCE_TIME=tm, IV_AFTER_PARTNER=after, IV_MAX_ROWS=500
            )
            rows = page.ET_PARTNERS.item if page.ET_PARTNERS is not None else []
            count += len(rows)
            if page.EV_MORE != "X" or not rows:
                return count
            last = rows[-1]
            date, tm, after = last.CHANGED_DATE, last.CHANGED_TIME, last.PARTNER

    return connector, {"zeep": raw}


def _dynamics(d: dict[str, Any]) -> tuple[Connector, dict[str, Callable[[], int]]]:
    config = {k: d[k] for k in ("org_url", "authority_host", "tenant_id", "client_id", "client_secret")}
    connector = DynamicsConnector({**config, "page_size": 5000}, session=_session(d))
    http = requests.Session()
    http.verify, http.trust_env = d["ca_bundle"], False
    token = http.post(
        f"{d['authority_host']}/{d['tenant_id']}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": d["client_id"],
              "client_secret": d["client_secret"], "scope": f"{d['org_url']}/.default"},
    ).json()["access_token"]  # fmt: skip
    # The same columns, page size and preferences the connector sends, so both move the same bytes.
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "OData-Version": "4.0",
               **connector._prefer(track=True)}  # fmt: skip
    first = f"{d['org_url']}/api/data/v9.2/contacts?$select={connector._select('contacts')}"

    def raw() -> int:
        """Change-tracking read with requests: follow @odata.nextLink to the @odata.deltaLink."""
        count, url = 0, first
        while True:
            body = http.get(url, headers=headers, timeout=60).json()
            count += len(body["value"])
            if "@odata.nextLink" not in body:
                return count
            url = body["@odata.nextLink"]

    return connector, {"requests_next_link": raw}


def _sap_odata(d: dict[str, Any]) -> tuple[Connector, dict[str, Callable[[], int]]]:
    """The OData connector against pyodata and plain requests, both with the connector's keyset paging:
    the same $filter on (LastChangeDate, LastChangeTime, key), $orderby, $top=500 and $expand."""
    config = {"host_url": d["host_url"], "sap_client": d["sap_client"], "auth": "basic",
              "username": d["username"], "password": d["password"], "page_size": 500}  # fmt: skip
    connector = SapODataConnector(config, session=_session(d))
    root = f"{d['host_url']}/sap/opu/odata/sap/API_BUSINESS_PARTNER/"
    http = requests.Session()
    http.auth = (d["username"], d["password"])
    client = pyodata.Client(root, http)
    expand = "to_BusinessPartnerAddress/to_EmailAddress"
    order = "LastChangeDate,LastChangeTime,BusinessPartner"

    def keyset(last: tuple[int, str, str] | None) -> str:
        """(day epoch seconds, LastChangeTime, key) of the last row → the next page's filter."""
        flt = "BusinessPartnerCategory eq '1'"
        if last is None:
            return flt
        day = "datetime'" + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(last[0])) + "'"
        at, key = f"time'{last[1]}'", f"'{last[2]}'"
        tie = f"LastChangeTime gt {at} or (LastChangeTime eq {at} and BusinessPartner gt {key})"
        return f"{flt} and (LastChangeDate gt {day} or (LastChangeDate eq {day} and ({tie})))"

    def with_pyodata() -> int:
        count, last = 0, None
        while True:
            query = client.entity_sets.A_BusinessPartner.get_entities().filter(keyset(last))
            page = (
                query.order_by(order).top(500).expand(expand).custom("sap-client", d["sap_client"]).execute()
            )
            count += len(page)
            if len(page) < 500:
                return count
            row = page[-1]
            last = (
                calendar.timegm(row.LastChangeDate.utctimetuple()),
                row.LastChangeTime,
                row.BusinessPartner,
            )

    def with_requests() -> int:
        count, last = 0, None
        while True:
            params = {"$filter": keyset(last), "$orderby": order, "$top": "500", "$expand": expand,
                      "$format": "json", "sap-client": d["sap_client"]}  # fmt: skip
            rows = http.get(root + "A_BusinessPartner", params=params, timeout=60).json()["d"]["results"]
            count += len(rows)
            if len(rows) < 500:
                return count
            row = rows[-1]
            last = (int(row["LastChangeDate"][6:-5]), row["LastChangeTime"], row["BusinessPartner"])

    return connector, {"pyodata_keyset": with_pyodata, "requests_keyset": with_requests}


VENDORS: dict[str, tuple[Callable[[dict[str, Any]], tuple[Connector, dict[str, Callable[[], int]]]], int]] = {
    "salesforce": (_salesforce, CONTACTS),
    "hubspot": (_hubspot, CONTACTS),
    "servicenow": (_servicenow, CONTACTS),
    "sap": (_sap, CONTACTS),
    "dynamics365": (_dynamics, CONTACTS),
    "sap_odata": (_sap_odata, CONTACTS),
}


def run(vendors: tuple[str, ...] | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for vendor, (build, contacts) in VENDORS.items():
        if vendors is not None and vendor not in vendors:
            continue
        with simulator_process(vendor, contacts) as description:
            connector, raws = build(description)
            connector.check_connection()  # log in outside the timed reads
            entry: dict[str, Any] = {
                "contacts": contacts,
                "connector": _measure(_connector_read(connector), contacts),
            }
            for name, raw in raws.items():
                entry[name] = _measure(raw, contacts)
                entry[f"connector_vs_{name}"] = round(
                    entry["connector"]["records_per_s"] / entry[name]["records_per_s"], 2
                )
            results[vendor] = entry
    return {
        "unit": f"records/s, median of {REPEATS} full reads of contacts (ratio > 1: connector faster)",
        "note": "each simulator in its own process on 127.0.0.1; raw baselines page the same data",
        "vendors": results,
    }
