"""Salesforce case threads (handoff): CaseComment visibility, cursors, hub comments, outbound messages."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from lxml import etree

from connectors.errors import AuthFailed, VendorUnavailable
from connectors.salesforce.connector import SalesforceConnector
from connectors.salesforce.simulator import ORG_ID, SalesforceSimulator
from connectors.simulation import SimulatorAdminError, admin_post
from connectors.testing import assert_no_secrets, simulator_session
from connectors.tickets import COMMENT_STREAM, MAX_COMMENT_CHARS, TicketState
from tests.connectors import ticket_support as ts
from tests.connectors.ticket_support import hook_recorder, running_simulators
from tests.fixtures.simulators import TINY, StartSimulator

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
ACK = (
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUTBOUND}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
).encode()


@pytest.fixture
def sim(simulator: StartSimulator) -> SalesforceSimulator:
    return simulator(SalesforceSimulator, counts=TINY)


def make(sim: SalesforceSimulator, **overrides: Any) -> SalesforceConnector:
    d = sim.describe()
    config = {"login_url": d["login_url"], "client_id": d["client_id"], "client_secret": d["client_secret"]}
    return SalesforceConnector({**config, **overrides}, session=simulator_session(sim))


def open_case(conn: SalesforceConnector, *, queue: str = "00GHb0000000042AAA") -> tuple[str, str]:
    return ts.ticket_open(conn, queue=queue)


def test_contract(sim: SalesforceSimulator) -> None:
    ts.assert_thread_contract(make(sim))  # the write-only stream is not probed with SOQL


def test_thread_has_published_and_internal_comments(sim: SalesforceSimulator) -> None:
    conn = make(sim)
    ext, case_id = open_case(conn)
    assert conn.ticket_find(ext) == case_id
    assert conn.ticket_find("no-such-handoff") is None
    assert conn.ticket_find("it's \\ tricky") is None  # quotes cannot end the SOQL literal
    sim.agent(ticket=case_id, body="We are looking into it.", author="Maria Agent")
    sim.agent(ticket=case_id, body="Check the refund policy", public=False, author="Maria Agent")
    thread = conn.ticket_thread(case_id)
    assert [(c.body, c.public, c.author, c.from_hub) for c in thread.comments] == [
        ("We are looking into it.", True, "Maria Agent", False),
        ("Check the refund policy", False, "Maria Agent", False),
    ]
    assert thread.state is TicketState.OPEN
    assert thread.queue == "00GHb0000000042AAA"
    assert thread.details["number"] == sim.case(case_id).data["CaseNumber"] != ""
    assert thread.ticket_id == case_id


def test_case_emails_join_the_thread(sim: SalesforceSimulator) -> None:
    conn = make(sim)
    _ext, case_id = open_case(conn)
    sim.case_email_add(
        case_id, "", html="<p>Your refund is on its way</p>", incoming=False, from_name="Maria Agent"
    )
    sim.case_email_add(case_id, "Thanks!", incoming=True, from_name="Customer")
    sim.agent(ticket=case_id, body="note", public=False)
    thread = conn.ticket_thread(case_id)
    assert sorted((c.body, c.public, c.author) for c in thread.comments) == [
        ("Thanks!", False, "Customer"),  # the customer's own mail is never delivered back
        ("Your refund is on its way", True, "Maria Agent"),
        ("note", False, "Maria Agent"),
    ]
    again = conn.ticket_thread(case_id, cursor=thread.cursor)
    assert again.comments == []
    without = make(sim, case_emails=False)
    without.check_connection()
    assert [c.body for c in without.ticket_thread(case_id).comments] == ["note"]


def test_simple_salesforce_reads_case_comments(sim: SalesforceSimulator) -> None:
    """The vendor's own client, unchanged, sees the comments with their relationship field."""
    conn = make(sim)
    _ext, case_id = open_case(conn)
    sim.agent(ticket=case_id, body="hello", author="Maria Agent")
    sf = conn.client()
    rows = sf.query_all(
        f"SELECT Id, CommentBody, IsPublished, CreatedBy.Name FROM CaseComment WHERE ParentId = '{case_id}'"  # noqa: S608
    )
    [row] = rows["records"]
    assert (row["CommentBody"], row["IsPublished"], row["CreatedBy"]["Name"]) == (
        "hello",
        True,
        "Maria Agent",
    )


def test_cursor_resumes_without_repeats_within_one_second(sim: SalesforceSimulator) -> None:
    conn = make(sim)
    _ext, case_id = open_case(conn)
    user = ("005Hb0000000002AAA", "Maria Agent")
    again = ts.assert_cursor_resumes(
        conn,
        case_id,
        lambda text, ts: sim.case_comment_add(case_id, text, public=True, user=user, ts=ts),
        lambda ts: sim.case_comment_add(case_id, "reply 5", public=True, user=user, ts=ts),
    )
    assert [c.body for c in again.comments] == ["reply 5"]


def test_hub_comment_comes_back_from_hub_and_append_is_idempotent(sim: SalesforceSimulator) -> None:
    conn = make(sim)
    ext, case_id = open_case(conn)
    record = ts.comment(ext, "x" * (MAX_COMMENT_CHARS + 50))
    ts.assert_appended_once(conn, record)
    [stored] = sim.case_comments(case_id)
    assert stored.data["IsPublished"] is True
    assert len(stored.data["CommentBody"]) <= MAX_COMMENT_CHARS  # CaseComment holds 4,000 characters
    assert stored.data["CommentBody"].endswith(f"[hub:{record['external_id']}]")
    [back] = conn.ticket_thread(case_id).comments
    assert back.from_hub and back.public
    assert back.body.startswith("xxx") and "[hub:" not in back.body
    assert back.author == "Integration User"


def test_case_not_found_is_transient(sim: SalesforceSimulator) -> None:
    ts.assert_missing_ticket_is_transient(make(sim))


def test_closed_case_is_permanent(sim: SalesforceSimulator) -> None:
    conn = make(sim)
    ext, case_id = open_case(conn)
    ts.assert_closed_ticket_is_permanent(sim, conn, ext, case_id)
    assert sim.case_comments(case_id) == []


def test_bad_comment_ids_are_refused_per_record(sim: SalesforceSimulator) -> None:
    conn = make(sim)
    ext, case_id = open_case(conn)
    result = conn.write(COMMENT_STREAM, [ts.comment(ext, "x", ext="bad id]"), ts.comment(ext, "fine")])
    assert [o.error is None for o in result.outcomes] == [False, True]
    assert len(sim.case_comments(case_id)) == 1


@pytest.mark.parametrize(
    ("status", "config", "expected"),
    [("Working", {}, TicketState.OPEN), ("Escalated", {}, TicketState.OPEN),
     ("resolved", {}, TicketState.RESOLVED), ("Closed", {}, TicketState.CLOSED),
     ("Solved", {"resolved_statuses": "Resolved, Solved"}, TicketState.RESOLVED),
     ("Resolved", {"resolved_statuses": ""}, TicketState.OPEN)],
)  # fmt: skip
def test_state_mapping(
    sim: SalesforceSimulator, status: str, config: dict[str, str], expected: TicketState
) -> None:
    conn = make(sim, **config)
    _ext, case_id = open_case(conn)
    thread = ts.assert_state_maps(sim, conn, case_id, status, expected)
    assert thread.details["status"] == sim.case(case_id).data["Status"]


def test_empty_queue_keeps_the_default_owner(sim: SalesforceSimulator) -> None:
    conn = make(sim)
    ext = f"handoff-{uuid.uuid4().hex[:10]}"
    outcome = conn.write("tickets", [{"external_id": ext, "fields": {"subject": "s", "queue": ""}}]).outcomes[
        0
    ]
    assert outcome.error is None
    assert "OwnerId" not in sim.case(ext).data


def test_unknown_case_read_is_permanent(sim: SalesforceSimulator) -> None:
    ts.assert_unknown_ticket_read_is_permanent(make(sim), "500Hb9999999999AAA", "500' OR Id != '")


def test_agent_sends_an_outbound_message(sim: SalesforceSimulator) -> None:
    conn = make(sim)
    _ext, case_id = open_case(conn)
    secret = "sf-url-secret-" + uuid.uuid4().hex
    with hook_recorder() as hook:
        hook.answer = ACK
        sim.register_webhook(f"{hook.url}/{secret}/")
        result = admin_post(sim.describe(), "agent", {"ticket": case_id, "body": "Done", "state": "resolved"})
    assert result["webhook"]["status"] == 200
    [hit] = hook.hits
    assert hit.path.endswith(f"/{secret}/")  # the URL carries the shared secret: no signature
    assert hit.headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(hit.body)
    notes = root.find(f"{{{SOAP_ENV}}}Body/{{{OUTBOUND}}}notifications")
    assert notes is not None
    assert notes.findtext(f"{{{OUTBOUND}}}OrganizationId") == ORG_ID == sim.describe()["organization_id"]
    [note] = notes.findall(f"{{{OUTBOUND}}}Notification")
    assert note.findtext(f"{{{OUTBOUND}}}Id") == result["webhook"]["id"]
    sobject = note.find(f"{{{OUTBOUND}}}sObject")
    assert sobject is not None
    assert sobject.get(f"{{{XSI}}}type") == "sf:Case"
    assert sobject.findtext(f"{{{SOBJECT}}}Id") == case_id
    assert sobject.findtext(f"{{{SOBJECT}}}Status") == "Resolved"
    assert conn.ticket_thread(case_id).state is TicketState.RESOLVED


def test_agent_admin_errors(sim: SalesforceSimulator) -> None:
    conn = make(sim)
    _ext, case_id = open_case(conn)
    assert sim.agent(ticket=case_id, body="poll me")["webhook"]["url"] is None
    with pytest.raises(SimulatorAdminError, match="no ticket"):
        admin_post(sim.describe(), "agent", {"ticket": "00099999", "body": "x"})
    with pytest.raises(SimulatorAdminError, match="give"):
        admin_post(sim.describe(), "agent", {"ticket": case_id})


def test_faults_on_thread_calls_are_typed(sim: SalesforceSimulator) -> None:
    conn = make(sim)
    ext, case_id = open_case(conn)
    ts.assert_thread_faults_typed(sim, conn, ext, case_id, outage="503")


def test_no_secret_in_errors(sim: SalesforceSimulator) -> None:
    d = sim.describe()
    bad = make(sim, client_secret="Wrong-Secret-123")
    with pytest.raises(AuthFailed) as info:
        bad.ticket_thread("500Hb0000000001AAA")
    assert_no_secrets(info.value, {"bad": "Wrong-Secret-123", "real": d["client_secret"]})
    conn = make(sim)
    conn.check_connection()
    sim.inject(errors=[{"status": 500}])
    with pytest.raises(VendorUnavailable) as down:
        conn.write(COMMENT_STREAM, [ts.comment("x", "y")])
    assert_no_secrets(down.value, {str(i): s for i, s in enumerate(conn.session.secrets)})


def test_manage_py_agent_reply_with_webhook(sim: SalesforceSimulator, settings: Any, tmp_path: Path) -> None:
    conn = make(sim)
    _ext, case_id = open_case(conn)
    number = sim.case(case_id).data["CaseNumber"]
    running_simulators(settings, tmp_path, salesforce=sim.describe())  # https: the CA bundle is trusted
    out = io.StringIO()
    with hook_recorder() as hook:
        hook.answer = ACK
        sim.register_webhook(hook.url + "/token/")
        call_command("simulators", "agent-reply", "salesforce", number, "--close", stdout=out)
    assert f"salesforce ticket {number}: state Closed" in out.getvalue()
    assert "webhook delivered, the hub answered HTTP 200" in out.getvalue()
    assert len(hook.hits) == 1
    assert conn.ticket_thread(case_id).state is TicketState.CLOSED
