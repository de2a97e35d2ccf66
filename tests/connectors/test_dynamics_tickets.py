"""Dynamics 365 case threads (handoff) and routing: the case's notes as the thread (`*WEB*` notes public,
others internal), customer messages appended as notes exactly once, states, cursors, faults, and cases put
into a queue with AddToQueue (by queue id or name)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.dynamics.connector import DynamicsConnector
from connectors.dynamics.simulator import API, QUEUES, DynamicsSimulator
from connectors.errors import ConnectorError
from connectors.testing import simulator_session
from connectors.tickets import COMMENT_STREAM, TicketState
from tests.connectors import ticket_support as ts
from tests.fixtures.simulators import TINY, StartSimulator


@pytest.fixture
def sim(simulator: StartSimulator) -> DynamicsSimulator:
    return simulator(DynamicsSimulator, counts=TINY)


def make(sim: DynamicsSimulator, **overrides: Any) -> DynamicsConnector:
    d = sim.describe()
    config = {k: d[k] for k in ("org_url", "authority_host", "tenant_id", "client_id", "client_secret")}
    return DynamicsConnector({**config, **overrides}, session=simulator_session(sim))


def test_contract(sim: DynamicsSimulator) -> None:
    ts.assert_thread_contract(make(sim))  # the write-only comment stream is not probed as an entity set


def test_thread_is_the_cases_notes_web_notes_public_others_internal(sim: DynamicsSimulator) -> None:
    conn = make(sim)
    ext, case_id = ts.ticket_open(conn, queue="")
    assert conn.ticket_find(ext) == case_id
    assert conn.ticket_find("no-such-handoff") is None
    assert conn.ticket_find("it's; odd/('x')") is None  # quoted into the key, never bends the URL
    sim.agent(ticket=case_id, body="We are looking into it.", author="Beth Anglin")
    sim.agent(ticket=case_id, body="Customer is on the legacy plan", public=False)
    sim.note_add(case_id, "<p>Second <b>line</b> &amp; more</p>", author="Abel Tuter")
    thread = conn.ticket_thread(case_id)
    assert [(c.body, c.public, c.author, c.from_hub) for c in thread.comments] == [
        ("We are looking into it.", True, "Beth Anglin", False),
        ("Customer is on the legacy plan", False, "Beth Anglin", False),
        ("Second line & more", True, "Abel Tuter", False),  # rich-text notes as plain text
    ]
    assert thread.state is TicketState.OPEN and thread.ticket_id == case_id
    assert thread.details["number"].startswith("CAS-") and thread.details["status"] == "In Progress"
    assert thread.queue == ""
    # An org whose agents answer with plain notes: an empty prefix makes every note public.
    assert all(c.public for c in make(sim, public_note_prefix="").ticket_thread(case_id).comments)


def test_cursor_resumes_without_repeats_within_one_second(sim: DynamicsSimulator) -> None:
    conn = make(sim, page_size=2)  # several pages of notes, by next link
    _ext, case_id = ts.ticket_open(conn, queue="")
    again = ts.assert_cursor_resumes(
        conn,
        case_id,
        lambda text, second: sim.note_add(case_id, text, ts=second),
        lambda second: sim.note_add(case_id, "reply 5", ts=second),
    )
    assert [c.body for c in again.comments] == ["reply 5"]


def test_customer_message_is_a_note_appended_once_and_comes_back_from_hub(sim: DynamicsSimulator) -> None:
    conn = make(sim)
    ext, case_id = ts.ticket_open(conn, queue="")
    record = ts.comment(ext, "Mein Paket fehlt seit Montag.", ext=f"{ext}:m1")
    first = ts.assert_appended_once(conn, record)
    [note] = sim.notes(case_id)
    assert note.id == first.outcomes[0].vendor_id and note.data["notetext"].endswith(f"[hub:{ext}:m1]")
    assert note.data["objecttypecode"] == "incident" and not note.data["notetext"].startswith("*WEB*")
    [back] = conn.ticket_thread(case_id).comments
    assert (back.body, back.public, back.from_hub) == ("Mein Paket fehlt seit Montag.", False, True)
    # A customer who types the portal prefix does not make the hub's note an agent reply.
    conn.write(COMMENT_STREAM, [ts.comment(ext, "*WEB* trick", ext=f"{ext}:m2")])
    assert [c.from_hub and not c.public for c in conn.ticket_thread(case_id).comments] == [True, True]
    # Bad records fail alone, before any call.
    result = conn.write(COMMENT_STREAM, [ts.comment(ext, "x", ext="bad id with spaces"), ts.comment("", "x")])
    assert [o.error is not None for o in result.outcomes] == [True, True]


def test_missing_case_is_transient_closed_case_permanent(sim: DynamicsSimulator) -> None:
    conn = make(sim)
    error = ts.assert_missing_ticket_is_transient(conn)
    assert "no case" in error.message
    ext, case_id = ts.ticket_open(conn, queue="")
    ts.assert_closed_ticket_is_permanent(sim, conn, ext, case_id)
    assert sim.notes(case_id) == []


def test_states_map_and_unknown_cases_are_permanent(sim: DynamicsSimulator) -> None:
    conn = make(sim)
    _ext, case_id = ts.ticket_open(conn, queue="")
    ts.assert_state_maps(sim, conn, case_id, "resolved", TicketState.RESOLVED)
    thread = ts.assert_state_maps(sim, conn, case_id, "closed", TicketState.CLOSED)
    assert thread.details["status"] == "Cancelled"
    ts.assert_state_maps(sim, conn, case_id, "open", TicketState.OPEN)
    ts.assert_unknown_ticket_read_is_permanent(conn, str(uuid.uuid4()), "x) or (1 eq 1")


def test_thread_faults_are_typed(sim: DynamicsSimulator) -> None:
    conn = make(sim)
    ext, case_id = ts.ticket_open(conn, queue="")
    ts.assert_thread_faults_typed(sim, conn, ext, case_id, outage="503")


def test_queue_by_name_or_id_add_to_queue_and_read_back(sim: DynamicsSimulator) -> None:
    conn = make(sim)
    ext, case_id = ts.ticket_open(conn, queue="Billing")
    assert sim.queue_of(case_id) == "Billing"
    assert conn.ticket_thread(case_id).queue == "Billing"
    # Written again with another queue (by id): the case moves; one queue item per case.
    again = conn.write(
        "tickets", [{"external_id": ext, "fields": {"subject": "x", "queue": QUEUES["Escalations"]}}]
    )
    assert again.failed == [] and again.outcomes[0].vendor_id == case_id
    assert sim.queue_of(case_id) == "Escalations"
    assert (
        sum(1 for r in sim.tables_by_set["queueitems"].rows.values() if r.data["_objectid_value"] == case_id)
        == 1
    )
    # Batch: each case into its queue; an unknown queue fails that case before anything is written.
    records = [
        {"external_id": f"q-{i}", "fields": {"subject": f"case {i}", "queue": queue}}
        for i, queue in enumerate(["Tier 1 Support", "No Such Queue", "O'Brien's", str(uuid.uuid4())])
    ]
    outcomes = {o.external_id: o for o in conn.write("tickets", records).outcomes}
    assert [outcomes[f"q-{i}"].error is None for i in range(4)] == [True, False, False, False]
    assert "no queue" in (outcomes["q-1"].error or "")
    assert sim.queue_of(str(outcomes["q-0"].vendor_id)) == "Tier 1 Support"
    assert all(sim.tables["tickets"].find("hub_externalid", f"q-{i}") is None for i in (1, 2, 3))


def test_simulator_annotations_filter_order_and_add_to_queue_errors(sim: DynamicsSimulator) -> None:
    conn = make(sim)
    _ext, case_id = ts.ticket_open(conn, queue="")
    sim.note_add(case_id, "b", ts=2_000_000_000)
    sim.note_add(case_id, "a", ts=1_900_000_000)
    headers = {**conn.auth_headers(refresh=False), "Accept": "application/json"}
    url = f"{sim.base_url}{API}"
    http = requests.Session()
    http.verify = sim.ca_bundle or False
    http.trust_env = False
    got = http.get(
        f"{url}/annotations",
        params={
            "$filter": f"_objectid_value eq {case_id} and createdon ge 2031-01-01T00:00:00Z",
            "$orderby": "createdon asc,annotationid asc",
            "$select": "notetext,createdon",
        },
        headers=headers,
    )
    assert got.status_code == 200 and [r["notetext"] for r in got.json()["value"]] == ["*WEB* b"]
    ordered = http.get(
        f"{url}/annotations",
        params={"$filter": f"_objectid_value eq {case_id}", "$orderby": "createdon asc"},
        headers=headers,
    )
    assert [r["notetext"] for r in ordered.json()["value"]] == ["*WEB* a", "*WEB* b"]
    # A note on a case that does not exist; AddToQueue with a bad queue, a bad target.
    missing = http.post(
        f"{url}/annotations",
        json={"notetext": "x", "objectid_incident@odata.bind": f"/incidents({uuid.uuid4()})"},
        headers=headers,
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "0x80040217"
    action = "Microsoft.Dynamics.CRM.AddToQueue"
    target = {"Target": {"@odata.type": "Microsoft.Dynamics.CRM.incident", "incidentid": case_id}}
    assert (
        http.post(f"{url}/queues({uuid.uuid4()})/{action}", json=target, headers=headers).status_code == 404
    )
    queue = QUEUES["Billing"]
    bad = http.post(f"{url}/queues({queue})/{action}", json={"Target": "x"}, headers=headers)
    assert bad.status_code == 400 and "Target" in bad.json()["error"]["message"]
    contact = {"Target": {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": str(uuid.uuid4())}}
    assert http.post(f"{url}/queues({queue})/{action}", json=contact, headers=headers).status_code == 400
    ok = http.post(f"{url}/queues({queue})/{action}", json=target, headers=headers)
    assert ok.status_code == 200 and uuid.UUID(ok.json()["QueueItemId"])
    unauthenticated = requests.post(
        f"{url}/queues({queue})/{action}", json=target, verify=sim.ca_bundle or False, timeout=10
    )
    assert unauthenticated.status_code == 401


def test_thread_read_refuses_a_next_link_to_another_host(
    sim: DynamicsSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make(sim, page_size=1)
    _ext, case_id = ts.ticket_open(conn, queue="")
    sim.note_add(case_id, "one")
    sim.note_add(case_id, "two")
    original = sim._link

    def foreign(*args: Any, **kwargs: Any) -> str:
        return original(*args, **kwargs).replace(sim.base_url, "https://attacker.example")

    monkeypatch.setattr(sim, "_link", foreign)
    with pytest.raises(ConnectorError) as info:
        conn.ticket_thread(case_id)
    assert "outside" in info.value.message


def test_vendor_table_has_no_unsupported_row_and_names_existing_tests() -> None:
    """docs/vendors.md, Dynamics 365: no "not yet"/"not supported" row; every test a row names exists."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "vendors.md").read_text()
    found = re.search(r"^## Microsoft Dynamics 365\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert found is not None
    rows = [
        line for line in found.group(1).splitlines() if line.startswith("| ") and "| Supported |" not in line
    ]
    assert len(rows) >= 20
    for row in rows:
        supported = row.strip("|").split(" | ")[-2].lower()
        assert "not yet" not in supported and "not supported" not in supported, row
    named = 0
    for row in rows:
        current = ""
        for path, name in re.findall(r"`(?:tests/\w+/)?(test_\w+\.py)?(?:::(\w+))?`", row):
            current = path or current
            if not name:
                continue
            module = next(root.glob(f"tests/*/{current}"))
            assert f"def {name}(" in module.read_text(), (current, name)
            named += 1
    assert named >= 25
