"""WhatsApp templates for late replies (issue 18): the 24-hour window is enforced by the simulator with Meta's
error 131047, the account's agent template goes through a closed window, the simulator checks templates like
Meta (name/language 132001, parameter count 132000, newlines/tabs/long space runs 132018, body length), and
the connector sends a template on request or falls back to it when the window closed while a text waited."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.errors import ConnectorError, InvalidConfig
from connectors.messaging_connector import MESSAGES, WhatsAppConnector
from connectors.testing import simulator_session
from connectors.whatsapp.channel import TEMPLATE_PARAM_MAX, WhatsAppAdapter, template_params
from connectors.whatsapp.simulator import WhatsAppSimulator

USER = "4915112345678"
KEYS = ("app_secret", "verify_token", "access_token", "phone_number_id", "api_base")


@pytest.fixture
def sim(tmp_path: Any) -> Iterator[WhatsAppSimulator]:
    sim = WhatsAppSimulator(state_dir=tmp_path).start()
    sim.window_failure = "sync"  # the send itself answers 131047 (Meta does on some paths)
    yield sim
    sim.stop()


def settings_of(sim: WhatsAppSimulator, **extra: Any) -> dict[str, Any]:
    d = sim.describe()
    return {**{k: d[k] for k in KEYS}, **extra}


def adapter(sim: WhatsAppSimulator, **extra: Any) -> WhatsAppAdapter:
    return WhatsAppAdapter(config=settings_of(sim, **extra), session=simulator_session(sim))


def reply_ref(sim: WhatsAppSimulator) -> dict[str, str]:
    return {"phone_number_id": sim.phone_number_id, "to": USER}


def record(sim: WhatsAppSimulator, n: int, text: str, **fields: Any) -> dict[str, Any]:
    return {"external_id": f"msg:{n}", "fields": {"reply_ref": reply_ref(sim), "text": text, **fields}}


def test_free_text_outside_the_window_is_refused_with_131047_and_inside_it_passes(
    sim: WhatsAppSimulator,
) -> None:
    sim.close_window(USER, hours_ago=25)
    with pytest.raises(ConnectorError) as refused:
        adapter(sim).send(reply_ref=reply_ref(sim), text="late")
    assert (refused.value.code, refused.value.permanent) == ("window_closed", True)
    assert sim.sent() == []
    sim.close_window(USER, hours_ago=23)  # still inside
    adapter(sim).send(reply_ref=reply_ref(sim), text="in time")
    assert [(m["type"], m["text"]) for m in sim.sent()] == [("text", "in time")]


def test_the_agent_template_goes_through_a_closed_window_with_the_text_as_its_parameter(
    sim: WhatsAppSimulator,
) -> None:
    sim.close_window(USER, hours_ago=30)
    wa = adapter(sim, agent_template="agent_reply", agent_template_language="de")
    assert wa.agent_template() == ("agent_reply", "de")
    sent = wa.send_agent_template(reply_ref=reply_ref(sim), text="Anna: Ihr Paket\nist   unterwegs.")
    (message,) = sim.sent()
    assert message["id"] == sent.platform_message_id
    assert (message["type"], message["template"], message["language"]) == ("template", "agent_reply", "de")
    assert message["params"] == ["Anna: Ihr Paket ist unterwegs."]  # flattened: Meta refuses newlines
    assert message["text"] == "Our support team replied to your request: Anna: Ihr Paket ist unterwegs."


def test_without_a_configured_template_there_is_none_to_send(sim: WhatsAppSimulator) -> None:
    wa = adapter(sim)
    assert wa.agent_template() is None
    with pytest.raises(ConnectorError) as caught:
        wa.send_agent_template(reply_ref=reply_ref(sim), text="late")
    assert caught.value.code == "no_template"
    assert sim.sent() == []


def test_the_template_settings_are_checked_like_every_setting(sim: WhatsAppSimulator) -> None:
    with pytest.raises(InvalidConfig):
        adapter(sim, agent_templat="typo")
    fields = {f.name: f for f in WhatsAppAdapter.config_fields}
    assert not fields["agent_template"].secret and fields["agent_template_language"].default == "en"


def test_a_long_reply_becomes_several_templates_each_within_the_body_limit(sim: WhatsAppSimulator) -> None:
    sim.close_window(USER)
    text = " ".join(["Wort"] * 500)  # 2,499 characters
    parts = template_params(text)
    assert len(parts) == 3 and all(len(p) <= TEMPLATE_PARAM_MAX for p in parts)
    assert " ".join(parts) == text
    adapter(sim, agent_template="agent_reply").send_agent_template(reply_ref=reply_ref(sim), text=text)
    sent = sim.sent()
    assert [m["params"][0] for m in sent] == parts
    assert all(len(m["text"]) <= 1024 for m in sent)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        (["line one\nline two"], "132018"),
        (["tab\there"], "132018"),
        (["five     spaces"], "132018"),
        (["x" * 1000], "100"),  # the filled body exceeds 1024 characters
        (["one", "two"], "132000"),
    ],
)
def test_the_simulator_refuses_bad_template_parameters_like_meta(
    sim: WhatsAppSimulator, params: list[str], code: str
) -> None:
    with pytest.raises(ConnectorError) as caught:
        adapter(sim).send_template(
            reply_ref=reply_ref(sim), template_name="agent_reply", language="en", params=params
        )
    assert (caught.value.code, caught.value.permanent) == (code, True)
    assert sim.sent() == []


def test_an_unknown_template_language_is_132001(sim: WhatsAppSimulator) -> None:
    wa = adapter(sim, agent_template="agent_reply", agent_template_language="pt_BR")
    with pytest.raises(ConnectorError) as caught:
        wa.send_agent_template(reply_ref=reply_ref(sim), text="Olá")
    assert caught.value.code == "132001"


def test_the_connector_sends_a_template_record_as_the_agent_template(sim: WhatsAppSimulator) -> None:
    sim.close_window(USER)
    c = WhatsAppConnector(settings_of(sim, agent_template="agent_reply"), session=simulator_session(sim))
    result = c.write(MESSAGES, [record(sim, 1, "Anna: late answer", template=True)])
    (outcome,) = result.outcomes
    assert outcome.error is None and outcome.vendor_id and outcome.vendor_id.startswith("wamid.")
    assert [(m["type"], m["params"]) for m in sim.sent()] == [("template", ["Anna: late answer"])]


def test_a_template_record_without_a_template_fails_that_record_only(sim: WhatsAppSimulator) -> None:
    sim.open_window(USER)
    c = WhatsAppConnector(settings_of(sim), session=simulator_session(sim))
    result = c.write(MESSAGES, [record(sim, 1, "late", template=True), record(sim, 2, "next")])
    assert result.outcomes[0].error and "template" in result.outcomes[0].error.lower()
    assert result.outcomes[1].error is None
    assert [m["text"] for m in sim.sent()] == ["next"]


def test_a_text_whose_window_closed_while_it_waited_falls_back_to_the_template(
    sim: WhatsAppSimulator,
) -> None:
    sim.close_window(USER)
    with_template = WhatsAppConnector(
        settings_of(sim, agent_template="agent_reply"), session=simulator_session(sim)
    )
    result = with_template.write(MESSAGES, [record(sim, 1, "waited through an outage")])
    assert result.outcomes[0].error is None
    assert [(m["type"], m["params"]) for m in sim.sent()] == [("template", ["waited through an outage"])]
    without = WhatsAppConnector(settings_of(sim), session=simulator_session(sim))
    result = without.write(MESSAGES, [record(sim, 2, "no template here")])
    assert result.outcomes[0].error and "131047" in result.outcomes[0].error  # dead-lettered with Meta's why
    assert len(sim.sent()) == 1
