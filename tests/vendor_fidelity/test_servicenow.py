"""ServiceNow simulator fidelity: Table API calls as ServiceNow's REST docs show them, with plain requests
(pysnow is unmaintained; ServiceNow's own examples use requests with basic auth)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from connectors.servicenow.simulator import ServiceNowSimulator, sys_id
from tests.fixtures.simulators import StartSimulator

COUNTS = {"contacts": 40, "accounts": 5, "tickets": 25, "orders": 5, "articles": 5, "leads": 0}


@pytest.fixture(scope="module")
def sim(session_simulator: StartSimulator) -> ServiceNowSimulator:
    return session_simulator(ServiceNowSimulator, counts=COUNTS)


@pytest.fixture(scope="module")
def snow(sim: ServiceNowSimulator) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.auth = (sim.username, sim.password)
    session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})
    return session


def table(sim: ServiceNowSimulator, name: str, record: str = "") -> str:
    return f"{sim.base_url}/api/now/table/{name}" + (f"/{record}" if record else "")


def assert_failure(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    body = response.json()
    assert body["status"] == "failure"
    assert set(body["error"]) == {"message", "detail"}
    return dict(body["error"])


def test_crud(snow: requests.Session, sim: ServiceNowSimulator) -> None:
    created = snow.post(table(sim, "incident"), json={"short_description": "Printer on fire", "urgency": "1"})
    assert created.status_code == 201
    record = created.json()["result"]
    assert record["number"].startswith("INC")
    incident = record["sys_id"]
    patched = snow.patch(table(sim, "incident", incident), json={"state": "2"})
    assert patched.status_code == 200
    assert patched.json()["result"]["state"] == "2"
    read = snow.get(table(sim, "incident", incident), params={"sysparm_fields": "number,state"})
    assert read.json()["result"] == {"number": record["number"], "state": "2"}
    assert snow.delete(table(sim, "incident", incident)).status_code == 204
    error = assert_failure(snow.get(table(sim, "incident", incident)), 404)
    assert error["message"] == "No Record found"
    assert_failure(snow.delete(table(sim, "incident", incident)), 404)
    assert_failure(snow.patch(table(sim, "incident", incident), json={"state": "7"}), 404)
    assert_failure(snow.patch(table(sim, "incident", sys_id("incident", 1)), data=b"[1,"), 400)


def test_encoded_query_operators_and_order(snow: requests.Session, sim: ServiceNowSimulator) -> None:
    def numbers(query: str) -> list[str]:
        response = snow.get(
            table(sim, "incident"), params={"sysparm_query": query, "sysparm_fields": "number"}
        )
        assert response.status_code == 200
        return [r["number"] for r in response.json()["result"]]

    assert numbers("number=INC0000003^EQ") == ["INC0000003"]
    assert numbers("numberININC0000001,INC0000002^ORDERBYDESCnumber") == ["INC0000002", "INC0000001"]
    assert numbers("number=INC0000001^ORnumber=INC0000004^ORDERBYnumber") == ["INC0000001", "INC0000004"]
    everything = numbers("numberANYTHING^ORDERBYnumber")
    assert len(everything) == sim.count("tickets")
    assert everything == sorted(everything)
    assert "INC0000001" not in numbers("numberNOT LIKE0000001")
    assert numbers("numberSTARTSWITHINC000001^ORDERBYnumber")[0] == "INC0000010"
    assert numbers("correlation_idISEMPTY^numberENDSWITH05") == ["INC0000005"]
    assert_failure(snow.get(table(sim, "incident"), params={"sysparm_query": "bogus term"}), 400)


def test_limit_offset_link_header_and_total_count(snow: requests.Session, sim: ServiceNowSimulator) -> None:
    total = sim.count("tickets")
    params: dict[str, Any] | None = {
        "sysparm_limit": 10,
        "sysparm_query": "ORDERBYnumber",
        "sysparm_fields": "number",
    }
    url: str | None = table(sim, "incident")
    seen: list[str] = []
    while url:
        response = snow.get(url, params=params)
        assert int(response.headers["X-Total-Count"]) == total
        seen += [r["number"] for r in response.json()["result"]]
        url, params = response.links.get("next", {}).get("url"), None
        assert 'rel="first"' in response.headers["Link"] and 'rel="last"' in response.headers["Link"]
    assert len(seen) == total == len(set(seen))
    single = snow.get(table(sim, "incident"), params={"sysparm_limit": 1000})
    assert "Link" not in single.headers
    assert_failure(snow.get(table(sim, "incident"), params={"sysparm_limit": "many"}), 400)


def test_display_value_false_true_all(snow: requests.Session, sim: ServiceNowSimulator) -> None:
    incident = sim.by_table["incident"].rows[sys_id("incident", 0)]
    caller = sim.by_table["customer_contact"].rows[incident.data["caller_id"]].data
    name = f"{caller['first_name']} {caller['last_name']}"
    link = f"{sim.base_url}/api/now/table/customer_contact/{incident.data['caller_id']}"
    url = table(sim, "incident", incident.id)
    fields = {"sysparm_fields": "caller_id,state,number"}
    raw = snow.get(url, params=fields).json()["result"]
    assert raw["caller_id"] == {"link": link, "value": incident.data["caller_id"]}
    assert raw["state"] == incident.data["state"]
    bare = snow.get(url, params={**fields, "sysparm_exclude_reference_link": "true"}).json()["result"]
    assert bare["caller_id"] == incident.data["caller_id"]
    shown = snow.get(url, params={**fields, "sysparm_display_value": "true"}).json()["result"]
    assert shown["caller_id"] == {"display_value": name, "link": link}
    labels = {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"}
    assert shown["state"] == labels[incident.data["state"]]
    shown_bare = snow.get(
        url, params={**fields, "sysparm_display_value": "true", "sysparm_exclude_reference_link": "true"}
    ).json()["result"]
    assert shown_bare["caller_id"] == name
    both = snow.get(url, params={**fields, "sysparm_display_value": "all"}).json()["result"]
    assert both["caller_id"] == {"display_value": name, "value": incident.data["caller_id"], "link": link}
    assert both["number"] == {"display_value": incident.data["number"], "value": incident.data["number"]}
    listed = snow.get(
        table(sim, "incident"), params={**fields, "sysparm_display_value": "all", "sysparm_limit": "2"}
    ).json()["result"]
    assert all(set(r["state"]) == {"display_value", "value"} for r in listed)
    assert_failure(snow.get(url, params={"sysparm_display_value": "maybe"}), 400)


def test_journal_fields_are_write_only_on_the_record(
    snow: requests.Session, sim: ServiceNowSimulator
) -> None:
    created = snow.post(
        table(sim, "incident"), json={"short_description": "Journal", "comments": "First reply"}
    )
    incident = created.json()["result"]["sys_id"]
    assert created.json()["result"]["comments"] == ""
    snow.patch(table(sim, "incident", incident), json={"work_notes": "Internal: check logs"})
    snow.patch(table(sim, "incident", incident), json={"comments": "Second reply"})
    record = snow.get(table(sim, "incident", incident)).json()["result"]
    assert (record["comments"], record["work_notes"]) == ("", "")
    shown = snow.get(
        table(sim, "incident", incident),
        params={"sysparm_display_value": "true", "sysparm_fields": "comments"},
    ).json()["result"]["comments"]
    entries = re.findall(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - (\S+) \(Additional comments\)\n(.+)$", shown, re.M
    )
    assert [text for _author, text in entries] == ["Second reply", "First reply"]  # newest first
    journal = snow.get(
        table(sim, "sys_journal_field"),
        params={"sysparm_query": f"element_id={incident}^ORDERBYsys_created_on",
                "sysparm_fields": "element,value,sys_created_by"},
    ).json()["result"]  # fmt: skip
    assert sorted((j["element"], j["value"]) for j in journal) == [  # same second: order not defined
        ("comments", "First reply"),
        ("comments", "Second reply"),
        ("work_notes", "Internal: check logs"),
    ]
    assert {j["sys_created_by"] for j in journal} == {sim.username}


def test_auth_and_rate_limit_shapes(sim: ServiceNowSimulator) -> None:
    anonymous = requests.get(table(sim, "incident"), timeout=5)
    assert assert_failure(anonymous, 401)["message"] == "User Not Authenticated"
    sim.inject(rate_limit={"count": 1, "retry_after": 7})
    try:
        limited = requests.get(table(sim, "incident"), auth=(sim.username, sim.password), timeout=5)
    finally:
        sim.clear_faults()
    assert_failure(limited, 429)
    assert limited.headers["Retry-After"] == "7"
    assert {"X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Rule"} <= set(limited.headers)
    assert_failure(
        requests.get(table(sim, "no_such_table"), auth=(sim.username, sim.password), timeout=5), 400
    )


def test_aggregate_count_and_group_by(snow: requests.Session, sim: ServiceNowSimulator) -> None:
    stats = f"{sim.base_url}/api/now/stats/incident"
    total = snow.get(stats, params={"sysparm_count": "true"}).json()["result"]
    assert total == {"stats": {"count": str(sim.count("tickets"))}}
    new = snow.get(stats, params={"sysparm_count": "true", "sysparm_query": "state=1"}).json()["result"]
    live = [r for r in sim.by_table["incident"].rows.values() if not r.deleted]
    assert new["stats"]["count"] == str(sum(1 for r in live if r.data.get("state") == "1"))
    grouped = snow.get(stats, params={"sysparm_count": "true", "sysparm_group_by": "state"}).json()["result"]
    counts = {g["groupby_fields"][0]["value"]: int(g["stats"]["count"]) for g in grouped}
    assert sum(counts.values()) == sim.count("tickets")
    assert_failure(
        snow.get(f"{sim.base_url}/api/now/stats/no_such_table", params={"sysparm_count": "true"}), 400
    )


def test_dot_walking_in_queries_and_fields(snow: requests.Session, sim: ServiceNowSimulator) -> None:
    incident = sim.by_table["incident"].rows[sys_id("incident", 2)]
    caller = sim.by_table["customer_contact"].rows[incident.data["caller_id"]]
    found = snow.get(
        table(sim, "incident"),
        params={"sysparm_query": f"caller_id.email={caller.data['email']}",
                "sysparm_fields": "number,caller_id.email,caller_id.account.name"},
    ).json()["result"]  # fmt: skip
    account = sim.by_table["customer_account"].rows[caller.data["account"]].data["name"]
    assert {"number": incident.data["number"], "caller_id.email": caller.data["email"],
            "caller_id.account.name": account} in found  # fmt: skip
    assert all(r["caller_id.email"] == caller.data["email"] for r in found)
    assert_failure(snow.get(table(sim, "incident"), params={"sysparm_query": "number.email=x"}), 400)
