"""The web widget in Chromium: embedded on a page of ANOTHER origin (its own server and a strict CSP), a
German visitor uses it keyboard-only, sees the cited answer arrive, and receives messages pushed later (the
bot's, and an agent's with the agent's name)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Browser, expect
from pytest_django.live_server_helper import LiveServer

from apps.chat.models import Action, Channel, Conversation
from apps.chat.services.channels import channel_create
from apps.chat.services.widget import message_add_and_publish
from apps.core.context import tenant_context
from apps.knowledge.demo import seed_demo_knowledge
from apps.tenants.models import Tenant
from tests.browser.helpers import REPORT_CSP_VIOLATIONS, TIMEOUT_MS
from tests.chat.widget_support import widget_enable
from tests.delivery.helpers import agent_says

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class _Site:
    """A customer's site on its own port: one page embedding the widget, under a strict CSP."""

    def __init__(self, page: str, csp: str) -> None:
        body, policy = page.encode(), csp

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Security-Policy", policy)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site_holder() -> Iterator[dict[str, Any]]:
    """Stops the site's server after the test."""
    holder: dict[str, Any] = {}
    yield holder
    if "site" in holder:
        holder["site"].stop()


def test_german_visitor_on_another_origin_keyboard_only(
    live_server: LiveServer, browser: Browser, tenant_a: Tenant, settings: Any, site_holder: dict[str, Any]
) -> None:
    settings.HUB_WIDGET_STREAM_SECONDS = 5
    tenant_a.enabled_locales = ["en", "de"]
    tenant_a.save()
    seed_demo_knowledge([tenant_a])
    channel = channel_create(tenant=tenant_a, name="Shop", kind="web", allowed_actions=Action.values)
    hub = live_server.url
    page_html = (
        '<!doctype html><html lang="de"><head><meta charset="utf-8"><title>Shop</title></head><body>'
        "<h1>Shop</h1>"
        f'<script src="{hub}/static/widget/widget.js" data-channel="{channel.pk}" data-key="KEY"></script>'
        "</body></html>"
    )
    # The host page's own policy: no inline script or style anywhere, scripts and fetches only from the hub.
    csp = f"default-src 'self'; script-src {hub}; connect-src {hub}; style-src 'self'; img-src 'self'"
    key = widget_enable(channel, origins=[])
    site_holder["site"] = site = _Site(page_html.replace("KEY", key), csp)
    Channel.objects.filter(pk=channel.pk).update(allowed_origins=[site.url])  # exactly this origin

    violations: list[str] = []
    context = browser.new_context(locale="de-DE", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    context.expose_binding("__hubCspViolation", lambda source, text: violations.append(text))
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    try:
        page = context.new_page()
        page.goto(site.url)
        launcher = page.get_by_role("button", name="Chat öffnen")  # the UI speaks German
        expect(launcher).to_be_visible()

        page.keyboard.press("Tab")
        expect(launcher).to_be_focused()
        page.keyboard.press("Enter")
        message_box = page.get_by_role("textbox", name="Ihre Nachricht")
        expect(message_box).to_be_focused()
        page.keyboard.type("Wie lange habe ich Zeit, einen Artikel zurückzugeben?")
        page.keyboard.press("Enter")

        log = page.get_by_role("log")
        answer = log.locator(".msg.assistant").first
        expect(answer).to_contain_text("14")
        source = answer.locator("..").get_by_role("link").first
        expect(source).to_have_attribute("target", "_blank")
        expect(source).to_have_attribute("rel", "noopener noreferrer")
        href = source.get_attribute("href", timeout=TIMEOUT_MS) or ""
        assert href.startswith(f"{hub}/t/tenant-a/knowledge/")

        with tenant_context(tenant_a):
            conversation = Conversation.objects.get(channel_id=channel.pk)
            assert conversation.locale == "de"
            page.wait_for_timeout(500)  # the push stream is open by now (a late one catches up anyway)
            message_add_and_publish(
                conversation=conversation, text="Ein Kollege hier: Ihr Paket ist unterwegs."
            )
            agent_says(conversation, "Ich kümmere mich darum.", author="Anna")  # an agent (issue 18)
        expect(log).to_contain_text("Ihr Paket ist unterwegs.")
        expect(log.get_by_text("Ihr Paket ist unterwegs.")).to_have_count(1)
        agent = log.locator(".msg.agent")
        expect(agent).to_contain_text("Ich kümmere mich darum.")
        expect(agent.locator(".who")).to_have_text("Anna")  # who answers, shown as text

        # Tab reaches the close button and the log; Escape closes and gives the focus back to the launcher.
        message_box.focus()
        page.keyboard.press("Escape")
        expect(page.get_by_role("button", name="Chat öffnen")).to_be_focused()
        expect(message_box).to_be_hidden()

        # A reload keeps the tab's conversation (sessionStorage): the history is back, nothing twice.
        page.reload()
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        expect(page.get_by_role("log")).to_contain_text("Ihr Paket ist unterwegs.")
        expect(page.get_by_role("log").get_by_text("Ihr Paket ist unterwegs.")).to_have_count(1)
        expect(page.get_by_role("log").locator(".msg.user")).to_have_count(1)

        # Handed off (issue 18): the message goes to the agents; no bot bubble, not even an empty one.
        with tenant_context(tenant_a):
            Conversation.objects.filter(pk=conversation.pk).update(status="handoff")
        log = page.get_by_role("log")
        bubbles = log.locator(".msg.assistant").count()
        page.get_by_role("textbox", name="Ihre Nachricht").focus()
        page.keyboard.type("Danke, ich warte.")
        page.keyboard.press("Enter")
        expect(log.locator(".msg.user")).to_have_count(2)
        page.wait_for_timeout(1500)  # the turn's answer (no text) has arrived by now
        expect(log.locator(".msg.assistant")).to_have_count(bubbles)
    finally:
        context.close()
    assert violations == [], violations
