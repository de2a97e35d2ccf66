"""ServiceNow incident threads (handoff): journal visibility, cursors, hub comments, agent, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from connectors.errors import AuthFailed, RateLimited, VendorUnavailable
from connectors.servicenow.connector import ServiceNowConnector
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulation import SimulatorAdminError, admin_post
from connectors.testing import assert_no_secrets, simulator_session
from connectors.tickets import COMMENT_STREAM, TicketState
from tests.connectors import ticket_support as ts
from tests.connectors.ticket_support import hook_recorder, running_simulators
from tests.fixtures.simulators import TINY, StartSimulator

SECRET = "sn-webhook-secret-for-tests"


@pytest.fixture
def sim(simulator: StartSimulator) -> ServiceNowSimulator:
    return simulator(ServiceNowSimulator, counts=TINY)


def make(sim: ServiceNowSimulator, **overrides: Any) -> ServiceNowConnector:
    d = sim.describe()
    config = {"instance_url": d["instance_url"], "username": d["username"], "password": d["password"]}
    return ServiceNowConnector({**config, **overrides}, session=simulator_session(sim))


def open_ticket(conn: ServiceNowConnector, *, queue: str = "Service Desk") -> tuple[str, str]:
    return ts.ticket_open(conn, queue=queue)


def test_contract(sim: ServiceNowSimulator) -> None:
    ts.assert_thread_contract(make(sim))  # the write-only stream is not probed as a table


def test_thread_has_public_and_private_comments(sim: ServiceNowSimulator) -> None:
    conn = make(sim)
    ext, sys_id = open_ticket(conn)
    assert conn.ticket_find(ext) == sys_id
    assert conn.ticket_find("no-such-handoff") is None
    sim.agent(ticket=sys_id, body="We are looking into it.", author="beth.anglin")
    sim.agent(ticket=sys_id, body="Customer is on the legacy plan", public=False)
    thread = conn.ticket_thread(sys_id)
    assert [(c.body, c.public, c.author, c.from_hub) for c in thread.comments] == [
        ("We are looking into it.", True, "beth.anglin", False),
        ("Customer is on the legacy plan", False, "beth.anglin", False),
    ]
    assert thread.state is TicketState.OPEN
    assert thread.queue == "Service Desk"
    assert thread.details["number"].startswith("INC")
    assert thread.ticket_id == sys_id
    assert all(c.created_at.tzinfo is not None for c in thread.comments)


def test_cursor_resumes_without_repeats_within_one_second(sim: ServiceNowSimulator) -> None:
    conn = make(sim, page_size=2)  # several journal pages
    _ext, sys_id = open_ticket(conn)
    again = ts.assert_cursor_resumes(
        conn,
        sys_id,
        lambda text, ts: sim.journal_add(sys_id, "comments", text, author="agent", ts=ts),
        lambda ts: sim.journal_add(sys_id, "comments", "reply 5", author="agent", ts=ts),
    )
    assert [c.body for c in again.comments] == ["reply 5"]


def test_hub_comment_comes_back_from_hub_and_append_is_idempotent(sim: ServiceNowSimulator) -> None:
    conn = make(sim)
    ext, sys_id = open_ticket(conn)
    record = ts.comment(ext, "  My order never arrived.  ")
    first = ts.assert_appended_once(conn, record)
    entries = sim.journal(sys_id)
    assert len(entries) == 1
    assert entries[0].data["element"] == "comments"
    assert entries[0].data["value"] == f"My order never arrived.\n\n[hub:{record['external_id']}]"
    [back] = conn.ticket_thread(sys_id).comments
    assert (back.body, back.public, back.from_hub) == ("My order never arrived.", True, True)
    assert back.id == first.outcomes[0].vendor_id


def test_ticket_not_found_is_transient(sim: ServiceNowSimulator) -> None:
    error = ts.assert_missing_ticket_is_transient(make(sim))
    assert "handoff-not-created-yet" in str(error)


def test_closed_ticket_is_permanent(sim: ServiceNowSimulator) -> None:
    conn = make(sim)
    ext, sys_id = open_ticket(conn)
    ts.assert_closed_ticket_is_permanent(sim, conn, ext, sys_id)
    assert sim.journal(sys_id) == []


def test_bad_input_is_refused_per_record(sim: ServiceNowSimulator) -> None:
    conn = make(sim)
    ext, sys_id = open_ticket(conn)
    result = conn.write(
        COMMENT_STREAM,
        [ts.comment(ext, "x", ext="has space"), ts.comment("a^b", "x"), ts.comment(ext, "fine")],
    )
    assert [o.error is None for o in result.outcomes] == [False, False, True]
    assert len(sim.journal(sys_id)) == 1


@pytest.mark.parametrize(
    ("state", "expected"),
    [("1", TicketState.OPEN), ("3", TicketState.OPEN), ("resolved", TicketState.RESOLVED),
     ("6", TicketState.RESOLVED), ("7", TicketState.CLOSED), ("8", TicketState.CLOSED)],
)  # fmt: skip
def test_state_mapping(sim: ServiceNowSimulator, state: str, expected: TicketState) -> None:
    conn = make(sim)
    _ext, sys_id = open_ticket(conn)
    thread = ts.assert_state_maps(sim, conn, sys_id, state, expected)
    assert thread.details["status"] == sim.incident(sys_id).data["state"]


def test_html_journal_entry_becomes_text(sim: ServiceNowSimulator) -> None:
    conn = make(sim)
    _ext, sys_id = open_ticket(conn)
    sim.agent(ticket=sys_id, body="[code]<p>Hello &amp; welcome</p><script>x()</script><p>Bye</p>[/code]")
    [entry] = conn.ticket_thread(sys_id).comments
    assert entry.body == "Hello & welcome\n\nBye"


def test_unknown_ticket_read_is_permanent(sim: ServiceNowSimulator) -> None:
    ts.assert_unknown_ticket_read_is_permanent(make(sim), "0" * 32, "../incident")


def test_agent_webhook_is_signed_like_a_business_rule(sim: ServiceNowSimulator) -> None:
    conn = make(sim)
    _ext, sys_id = open_ticket(conn)
    number = sim.incident(sys_id).data["number"]
    with hook_recorder() as hook:
        sim.register_webhook(hook.url, secret=SECRET)
        result = admin_post(
            sim.describe(), "agent", {"ticket": number, "body": "Fixed it", "state": "resolved"}
        )
    assert result["webhook"]["status"] == 200
    [hit] = hook.hits
    headers = {k.lower(): v for k, v in hit.headers.items()}
    stamp = headers["x-hub-request-timestamp"]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + hit.body, hashlib.sha256).hexdigest()
    assert headers["x-hub-signature-256"] == f"sha256={expected}"
    assert abs(int(stamp) - time.time()) < 60
    payload = json.loads(hit.body)
    assert payload == {"id": result["webhook"]["id"], "table": "incident", "sys_id": sys_id}
    thread = conn.ticket_thread(sys_id)
    assert thread.state is TicketState.RESOLVED
    assert [c.body for c in thread.comments] == ["Fixed it"]
    # each announcement has its own id (the hub de-duplicates by it)
    with hook_recorder() as hook:
        sim.register_webhook(hook.url, secret=SECRET)
        sim.agent(ticket=sys_id, body="one")
        sim.agent(ticket=sys_id, body="two")
    assert len({json.loads(h.body)["id"] for h in hook.hits}) == 2


def test_agent_without_webhook_and_bad_calls(sim: ServiceNowSimulator) -> None:
    conn = make(sim)
    _ext, sys_id = open_ticket(conn)
    assert sim.agent(ticket=sys_id, body="poll me")["webhook"]["url"] is None
    with pytest.raises(SimulatorAdminError, match="no ticket"):
        admin_post(sim.describe(), "agent", {"ticket": "INC9999999", "body": "x"})
    with pytest.raises(SimulatorAdminError, match="unknown state"):
        admin_post(sim.describe(), "agent", {"ticket": sys_id, "state": "exploded"})
    with pytest.raises(SimulatorAdminError, match="give"):
        admin_post(sim.describe(), "agent", {"ticket": sys_id})
    assert [c.body for c in conn.ticket_thread(sys_id).comments] == ["poll me"]


def test_faults_on_thread_routes_are_typed(sim: ServiceNowSimulator) -> None:
    conn = make(sim)
    ext, sys_id = open_ticket(conn)
    sim.inject(rate_limit={"count": 1, "retry_after": 9})
    with pytest.raises(RateLimited) as limited:
        conn.ticket_thread(sys_id)
    assert limited.value.retry_after == 9
    sim.inject(outage="503")
    with pytest.raises(VendorUnavailable):
        conn.ticket_thread(sys_id)
    with pytest.raises(VendorUnavailable):
        conn.write(COMMENT_STREAM, [ts.comment(ext, "during the outage")])
    sim.clear_faults()
    sim.agent(ticket=sys_id, body="the agent works through an outage; the hub polls later")
    assert len(conn.ticket_thread(sys_id).comments) == 1


def test_no_secret_in_errors(sim: ServiceNowSimulator) -> None:
    d = sim.describe()
    bad = make(sim, password="Wrong-Pass-123")
    with pytest.raises(AuthFailed) as info:
        bad.ticket_thread("0" * 32)
    assert_no_secrets(info.value, {"password": "Wrong-Pass-123", "real": d["password"]})
    oauth = make(sim, auth="oauth", client_id=d["client_id"], client_secret=d["client_secret"])
    oauth.check_connection()
    sim.inject(outage="503")
    with pytest.raises(VendorUnavailable) as down:
        oauth.write(COMMENT_STREAM, [ts.comment("x", "y")])
    assert_no_secrets(
        down.value, {"secret": d["client_secret"], **{str(i): s for i, s in enumerate(oauth.session.secrets)}}
    )


# --- manage.py simulators agent-reply (the demo's agent) ----------------------------------------------


def test_manage_py_agent_reply(sim: ServiceNowSimulator, settings: Any, tmp_path: Path) -> None:
    conn = make(sim)
    _ext, sys_id = open_ticket(conn)
    number = sim.incident(sys_id).data["number"]
    with pytest.raises(CommandError, match="not running"):
        call_command("simulators", "agent-reply", "servicenow", number, "hi", stdout=io.StringIO())
    running_simulators(settings, tmp_path, servicenow=sim.describe())
    out = io.StringIO()
    call_command(
        "simulators", "agent-reply", "servicenow", number, "Your laptop is ready", "--resolve", stdout=out
    )
    assert f"servicenow ticket {number}: public comment" in out.getvalue()
    assert "next poll" in out.getvalue()  # no webhook registered
    call_command("simulators", "agent-reply", "servicenow", number, "check warranty", "--private", stdout=out)
    thread = conn.ticket_thread(sys_id)
    assert [(c.body, c.public) for c in thread.comments] == [
        ("Your laptop is ready", True),
        ("check warranty", False),
    ]
    assert thread.state is TicketState.RESOLVED
    for bad, message in [
        (["sap", "1", "x"], "not 'sap'"),
        (["servicenow", number], "give the reply text"),
        (["servicenow", "INC0000404", "x"], "no ticket"),
        (["servicenow"], "usage"),
    ]:
        with pytest.raises(CommandError, match=message):
            call_command("simulators", "agent-reply", *bad, stdout=io.StringIO())
    with pytest.raises(CommandError, match="unexpected arguments"):
        call_command("simulators", "status", "servicenow", stdout=io.StringIO())
