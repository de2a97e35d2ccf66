"""HubSpot ticket threads (handoff): e-mails and notes, cursors, hub messages, agent helper, webhook v3."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import call_command

from connectors.errors import AuthFailed, VendorUnavailable
from connectors.hubspot.connector import HubSpotConnector
from connectors.hubspot.simulator import HubSpotSimulator
from connectors.simulation import SimulatorAdminError, admin_post
from connectors.testing import assert_no_secrets, simulator_session
from connectors.tickets import COMMENT_STREAM, TicketState
from tests.connectors import ticket_support as ts
from tests.connectors.ticket_support import hook_recorder, running_simulators
from tests.fixtures.simulators import TINY, StartSimulator


@pytest.fixture
def sim(simulator: StartSimulator) -> HubSpotSimulator:
    started = simulator(HubSpotSimulator, counts=TINY)
    started.pipelines["support-eu"] = [("10", "New", "OPEN"), ("11", "Done", "CLOSED")]
    return started


def make(sim: HubSpotSimulator, **overrides: Any) -> HubSpotConnector:
    config = {"base_url": sim.base_url, "access_token": sim.private_app_token}
    return HubSpotConnector({**config, **overrides}, session=simulator_session(sim))


def open_ticket(conn: HubSpotConnector, *, queue: str = "support-eu") -> tuple[str, str]:
    return ts.ticket_open(conn, queue=queue)


def test_contract(sim: HubSpotSimulator) -> None:
    # hs_pipeline is a known ticket property; the comment stream is not probed
    ts.assert_thread_contract(make(sim))


def test_thread_has_emails_and_notes(sim: HubSpotSimulator) -> None:
    conn = make(sim)
    ext, ticket_id = open_ticket(conn)
    assert conn.ticket_find(ext) == ticket_id
    assert conn.ticket_find("no-such-handoff") is None
    assert conn.ticket_find("../../contacts") is None
    sim.agent(ticket=ticket_id, body="We are on it & will reply.", author="Sam Agent")
    sim.agent(ticket=ticket_id, body="VIP <customer>", public=False)
    # a mail the customer sent to support directly: their own words, never echoed back
    sim.engagement_add(ticket_id, "emails", {"hs_email_direction": "INCOMING_EMAIL", "hs_email_text": "Hi"})
    thread = conn.ticket_thread(ticket_id)
    got = sorted((c.body, c.public, c.author, c.from_hub) for c in thread.comments)
    assert got == [
        ("Hi", False, "", False),
        ("VIP <customer>", False, "", False),  # the note's HTML is plain text again
        ("We are on it & will reply.", True, "Sam Agent", False),
    ]
    assert thread.state is TicketState.OPEN
    assert thread.queue == "support-eu"
    assert thread.details == {"number": ticket_id, "status": "10"}  # the queue pipeline's first stage


def test_cursor_resumes_without_repeats_within_one_second(sim: HubSpotSimulator) -> None:
    conn = make(sim)
    _ext, ticket_id = open_ticket(conn)
    email = {"hs_email_direction": "EMAIL"}
    again = ts.assert_cursor_resumes(
        conn,
        ticket_id,
        lambda text, ts: sim.engagement_add(ticket_id, "emails", {**email, "hs_email_text": text}, ts=ts),
        lambda ts: sim.engagement_add(ticket_id, "notes", {"hs_note_body": "<p>late note</p>"}, ts=ts),
    )
    assert [(c.body, c.public) for c in again.comments] == [("late note", False)]


def test_associations_page(sim: HubSpotSimulator) -> None:
    conn = make(sim)
    _ext, ticket_id = open_ticket(conn)
    for i in range(120):  # more than one batch read (100)
        sim.engagement_add(ticket_id, "notes", {"hs_note_body": f"n{i}"})
    assert len(conn.ticket_thread(ticket_id).comments) == 120
    token = sim.private_app_token
    url = f"{sim.base_url}/crm/v4/objects/tickets/{ticket_id}/associations/notes"
    page = requests.get(
        url, params={"limit": 50}, headers={"Authorization": f"Bearer {token}"}, timeout=5
    ).json()
    assert len(page["results"]) == 50 and page["paging"]["next"]["after"] == "50"
    assert page["results"][0]["associationTypes"][0]["typeId"] == 227


def test_hub_message_comes_back_from_hub_and_append_is_idempotent(sim: HubSpotSimulator) -> None:
    conn = make(sim)
    ext, ticket_id = open_ticket(conn)
    record = ts.comment(ext, "My parcel is lost", author="Jürgen Müller")
    ts.assert_appended_once(conn, record)
    [mail] = sim.engagements(ticket_id, "emails")
    assert mail.data["hs_email_direction"] == "INCOMING_EMAIL"
    assert mail.data["hs_email_text"].endswith(f"[hub:{record['external_id']}]")
    [back] = conn.ticket_thread(ticket_id).comments
    assert (back.body, back.from_hub, back.public, back.author) == (
        "My parcel is lost",
        True,
        False,
        "Jürgen Müller",
    )


def test_new_tickets_get_their_pipelines_first_stage(sim: HubSpotSimulator) -> None:
    """HubSpot creates no ticket without hs_pipeline_stage; stage ids belong to one pipeline."""
    raw = requests.post(
        f"{sim.base_url}/crm/v3/objects/tickets", json={"properties": {"subject": "no stage"}},
        headers={"Authorization": f"Bearer {sim.private_app_token}"}, timeout=5,
    )  # fmt: skip
    assert raw.status_code == 400 and "hs_pipeline_stage" in raw.json()["message"]
    conn = make(sim)
    plain = conn.write("tickets", [{"external_id": "h-plain", "fields": {"subject": "s", "queue": ""}}])
    routed = conn.write(
        "tickets", [{"external_id": "h-eu", "fields": {"subject": "s", "queue": "support-eu"}}]
    )
    assert plain.failed == [] and routed.failed == []
    assert (sim.ticket("h-plain").data["hs_pipeline"], sim.ticket("h-plain").data["hs_pipeline_stage"]) == (
        "0",
        "1",
    )
    assert (sim.ticket("h-eu").data["hs_pipeline"], sim.ticket("h-eu").data["hs_pipeline_stage"]) == (
        "support-eu",
        "10",
    )
    # an update keeps the stage an agent set
    sim.agent(ticket="h-eu", state="11")
    assert conn.write("tickets", [{"external_id": "h-eu", "fields": {"subject": "t"}}]).failed == []
    assert sim.ticket("h-eu").data["hs_pipeline_stage"] == "11"
    # a queue that names no pipeline fails that record, not the batch
    mixed = conn.write(
        "tickets",
        [{"external_id": "h-bad", "fields": {"subject": "s", "queue": "nope"}},
         {"external_id": "h-ok", "fields": {"subject": "s"}}],
    )  # fmt: skip
    assert [(o.external_id, o.error is None) for o in mixed.outcomes] == [("h-bad", False), ("h-ok", True)]
    assert "pipeline nope does not exist" in (mixed.outcomes[0].error or "")
    with pytest.raises(KeyError):
        sim.ticket("h-bad")


def test_ticket_not_found_is_transient(sim: HubSpotSimulator) -> None:
    ts.assert_missing_ticket_is_transient(make(sim))


def test_closed_ticket_is_permanent(sim: HubSpotSimulator) -> None:
    conn = make(sim)
    ext, ticket_id = open_ticket(conn)
    ts.assert_closed_ticket_is_permanent(sim, conn, ext, ticket_id)
    assert sim.engagements(ticket_id, "emails") == []


def test_bad_comment_ids_are_refused_per_record(sim: HubSpotSimulator) -> None:
    conn = make(sim)
    ext, ticket_id = open_ticket(conn)
    result = conn.write(COMMENT_STREAM, [ts.comment(ext, "x", ext="white space"), ts.comment(ext, "fine")])
    assert [o.error is None for o in result.outcomes] == [False, True]
    assert len(sim.engagements(ticket_id, "emails")) == 1


@pytest.mark.parametrize(
    ("stage", "config", "expected"),
    [("1", {}, TicketState.OPEN), ("open", {}, TicketState.OPEN), ("closed", {}, TicketState.CLOSED),
     ("4", {}, TicketState.CLOSED), ("77", {"closed_stages": "4, 77"}, TicketState.CLOSED),
     ("5", {"resolved_stages": "5"}, TicketState.RESOLVED)],
)  # fmt: skip
def test_state_mapping(
    sim: HubSpotSimulator, stage: str, config: dict[str, str], expected: TicketState
) -> None:
    conn = make(sim, **config)
    _ext, ticket_id = open_ticket(conn)
    thread = ts.assert_state_maps(sim, conn, ticket_id, stage, expected)
    assert thread.details["status"] == sim.ticket(ticket_id).data["hs_pipeline_stage"]


def test_unknown_ticket_read_is_permanent(sim: HubSpotSimulator) -> None:
    ts.assert_unknown_ticket_read_is_permanent(make(sim), "99999999999", "1/../2")


def test_agent_webhook_is_signed_v3(sim: HubSpotSimulator) -> None:
    conn = make(sim)
    _ext, ticket_id = open_ticket(conn)
    with hook_recorder("/hooks/hubspot/abc/") as hook:
        sim.register_webhook(hook.url)  # HubSpot signs with the app's client secret
        result = admin_post(
            sim.describe(), "agent", {"ticket": ticket_id, "body": "Solved", "state": "closed"}
        )
    assert result["webhook"]["status"] == 200
    [hit] = hook.hits
    headers = {k.lower(): v for k, v in hit.headers.items()}
    stamp = headers["x-hubspot-request-timestamp"]
    message = b"POST" + hook.url.encode() + hit.body + stamp.encode()
    expected = base64.b64encode(
        hmac.new(sim.client_secret.encode(), message, hashlib.sha256).digest()
    ).decode()
    assert headers["x-hubspot-signature-v3"] == expected
    assert abs(int(stamp) - time.time() * 1000) < 60_000
    events = json.loads(hit.body)
    assert [(e["subscriptionType"], e["objectId"], e["propertyName"]) for e in events] == [
        ("ticket.propertyChange", int(ticket_id), "notes_last_updated"),
        ("ticket.propertyChange", int(ticket_id), "hs_pipeline_stage"),
    ]
    assert events[1]["propertyValue"] == "4"
    assert len({e["eventId"] for e in events}) == 2
    thread = conn.ticket_thread(ticket_id)
    assert thread.state is TicketState.CLOSED
    assert [c.body for c in thread.comments] == ["Solved"]


def test_agent_admin_errors(sim: HubSpotSimulator) -> None:
    conn = make(sim)
    ext, ticket_id = open_ticket(conn)
    assert sim.agent(ticket=ext, body="by the hub's external id")["ticket"] == ticket_id
    assert sim.agent(ticket=ticket_id, body="poll me")["webhook"]["url"] is None
    with pytest.raises(SimulatorAdminError, match="no ticket"):
        admin_post(sim.describe(), "agent", {"ticket": "123", "body": "x"})
    with pytest.raises(SimulatorAdminError, match="give"):
        admin_post(sim.describe(), "agent", {"ticket": ticket_id, "body": "  "})


def test_faults_on_thread_calls_are_typed(sim: HubSpotSimulator) -> None:
    conn = make(sim)
    ext, ticket_id = open_ticket(conn)
    ts.assert_thread_faults_typed(sim, conn, ext, ticket_id, outage="reset")


def test_no_secret_in_errors(sim: HubSpotSimulator) -> None:
    bad = make(sim, access_token="pat-na1-wrong-token-000")
    with pytest.raises(AuthFailed) as info:
        bad.ticket_thread("123")
    assert_no_secrets(info.value, {"bad": "pat-na1-wrong-token-000", "real": sim.private_app_token})
    conn = make(sim)
    sim.inject(errors=[{"status": 502}])
    with pytest.raises(VendorUnavailable) as down:
        conn.write(COMMENT_STREAM, [ts.comment("x", "y")])
    assert_no_secrets(down.value, {"token": sim.private_app_token})


def test_manage_py_agent_reply_json(sim: HubSpotSimulator, settings: Any, tmp_path: Path) -> None:
    conn = make(sim)
    ext, ticket_id = open_ticket(conn)
    running_simulators(settings, tmp_path, hubspot=sim.describe())
    out = io.StringIO()
    call_command(
        "simulators", "agent-reply", "hubspot", ext, "internal only", "--private", "--json", stdout=out
    )
    result = json.loads(out.getvalue())
    assert result["ticket"] == ticket_id and result["comment_id"]
    [note] = conn.ticket_thread(ticket_id).comments
    assert (note.body, note.public) == ("internal only", False)
