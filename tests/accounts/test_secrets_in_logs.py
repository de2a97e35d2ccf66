"""Production e-mail goes out over SMTP, and no reset, invitation or webhook secret reaches any log line.

Issue 14: production had no way to send e-mail (the console backend printed each message, link included,
into the logs) and gunicorn's access log printed the paths that carry those secrets. This test runs the hub
as production runs it — gunicorn with deploy/gunicorn.conf.py and hub.settings.production, on this run's
test databases and Redis — with a real SMTP listener on loopback, goes through a password reset and an
invitation like a person would (links from the received e-mails), then greps everything gunicorn and Django
wrote (access log, error log, application logs at DEBUG) for the secrets.
"""

from __future__ import annotations

import email
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import pytest
import requests
from aiosmtpd.controller import Controller
from django.conf import settings
from django.db import connections

from apps.tenants.models import Invitation, Membership, Role, Tenant
from apps.tenants.services import management_token_create, membership_add
from tests.factories import UserFactory
from tests.fixtures.processes import PRODUCTION_ENV

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NEW_PASSWORD = "a-brand-new-passphrase-42"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Inbox:
    """What the SMTP listener received: one parsed message per delivery."""

    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook
        self.messages.append(email.message_from_bytes(envelope.original_content))
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= count, f"the SMTP listener got {len(self.messages)} of {count} messages"

    def link(self, index: int, pattern: str) -> str:
        body = self.messages[index].get_payload(decode=True)
        assert isinstance(body, bytes)
        match = re.search(pattern, body.decode())
        assert match is not None, body.decode()
        return urlparse(match[0]).path


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _database_url(alias: str) -> str:
    config = connections[alias].settings_dict
    password = quote(str(config["PASSWORD"]), safe="")
    return f"postgres://{config['USER']}:{password}@{config['HOST']}:{config['PORT']}/{config['NAME']}"


@dataclass
class Hub:
    """The hub under gunicorn with production settings; `log` is everything it printed."""

    base: str
    log: Path
    session_cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        # As behind the TLS-terminating ingress: production settings trust X-Forwarded-Proto for HTTPS.
        headers = {"X-Forwarded-Proto": "https", "Origin": self.base.replace("http://", "https://")}
        headers |= kwargs.pop("headers", {})
        response = requests.request(
            method,
            self.base + path,
            headers=headers,
            cookies=self.session_cookies,  # secure cookies, sent by hand over the loopback's plain HTTP
            allow_redirects=False,
            timeout=30,
            **kwargs,
        )
        self.session_cookies |= {k: v for k, v in response.cookies.get_dict().items() if v is not None}
        return response

    def form_post(self, path: str, data: dict[str, str]) -> requests.Response:
        page = self.request("GET", path)
        assert page.status_code == 200, (path, page.status_code)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf is not None, page.text[:500]
        return self.request("POST", path, data={"csrfmiddlewaretoken": csrf[1], **data})

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def hub(smtp: tuple[Inbox, int], tmp_path: Path) -> Iterator[Hub]:
    _inbox, smtp_port = smtp
    port = _free_port()
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HUB_", "REGION_"))},
        "DJANGO_SETTINGS_MODULE": "hub.settings.production",
        "DJANGO_SECRET_KEY": "s" * 20 + "production-secret-key-for-the-log-test-0123456789",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": _database_url("default"),
        **{
            f"REGION_{code.upper()}_DATABASE_URL": _database_url(f"region_{code}")
            for code in settings.HUB_REGIONS
        },
        "HUB_REGIONS": ",".join(settings.HUB_REGIONS),
        "REDIS_URL": settings.REDIS_URL,
        "HUB_HOME": str(settings.HUB_HOME),
        # The production secrets every start needs (one list: tests/foundation/test_settings.py).
        **{k: v for k, v in PRODUCTION_ENV.items() if k.startswith("HUB_") and k != "HUB_REGIONS"},
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        # The listener speaks plain SMTP on loopback, which production allows without a password only.
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "DEFAULT_FROM_EMAIL": "hub@example.com",
        "LOG_LEVEL": "DEBUG",  # the most the application ever logs
        "WEB_CONCURRENCY": "1",
    }
    log = tmp_path / "gunicorn.log"
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    argv = [gunicorn, "hub.wsgi", "--config", str(ROOT / "deploy" / "gunicorn.conf.py"),
            "--bind", f"127.0.0.1:{port}", "--worker-tmp-dir", str(tmp_path)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    instance = Hub(base=f"http://127.0.0.1:{port}", log=log)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if instance.request("GET", "/healthz").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield instance
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_reset_and_invitation_mail_go_out_over_smtp_and_no_log_line_holds_a_secret(
    hub: Hub, smtp: tuple[Inbox, int], tenant_a: Tenant
) -> None:
    inbox, _port = smtp
    bob = UserFactory.create(username="bob", email="bob@example.com")
    alice = UserFactory.create(username="alice", email="alice@example.com")
    membership_add(tenant=tenant_a, user=alice, role=Role.ADMIN)
    _token, api_token = management_token_create(tenant=tenant_a, user=alice, name="logs", expires_at=None)

    # 1. A password reset, from the form to the new password, with the link from the e-mail.
    response = hub.form_post("/accounts/password/reset/", {"email": "bob@example.com"})
    assert response.status_code == 302, response.text[:500]
    inbox.wait_for(1)
    reset_path = inbox.link(0, r"https?://\S+/accounts/password/reset/\S+/\S+/")
    reset_token = reset_path.rstrip("/").rsplit("/", 1)[1]
    response = hub.request("GET", reset_path)
    assert response.status_code == 302  # Django moves the token into the session, then out of the URL
    set_password = urlparse(response.headers["Location"]).path
    response = hub.form_post(set_password, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302, response.text[:500]
    bob.refresh_from_db()
    assert bob.check_password(NEW_PASSWORD)

    # 2. An invitation through the management API, accepted by signing up from the e-mailed link.
    hub.session_cookies.clear()
    response = hub.request(
        "POST",
        "/api/v1/tenants/tenant-a/members/",
        json={"email": "dora@example.com", "role": "viewer"},
        headers={"Authorization": f"Bearer {api_token}"},
    )
    assert response.status_code == 202, response.text
    inbox.wait_for(2)
    invitation_path = inbox.link(1, r"https?://\S+/accounts/invitations/\S+/")
    invitation_token = invitation_path.rstrip("/").rsplit("/", 1)[1]
    signup = {"username": "dora", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    response = hub.form_post(invitation_path, signup)
    assert response.status_code == 302, response.text[:500]
    assert Membership.objects.filter(tenant=tenant_a, user__username="dora").exists()
    assert Invitation.objects.get(email="dora@example.com").accepted_at is not None
    # The used link again: a 404 that Django's request logger reports with the path.
    hub.session_cookies.clear()
    assert hub.request("GET", invitation_path).status_code == 404

    # 3. A Salesforce outbound message with a guessed token (the token is part of the URL Salesforce calls).
    webhook_token = "sf-webhook-token-0123456789abcdef"
    response = hub.request("POST", f"/hooks/salesforce/{uuid.uuid4()}/{webhook_token}/", data=b"x")
    assert response.status_code in (401, 404)

    time.sleep(0.5)  # let gunicorn flush the last access-log lines
    logged = hub.log_text()
    # The logs saw these requests (else the test proves nothing) ...
    assert "/accounts/password/reset/" in logged and "/accounts/invitations/" in logged, logged[-3000:]
    assert "[redacted]" in logged
    # ... and no line holds a secret, nor any part of an e-mail.
    secrets = {
        "reset token": reset_token,
        "invitation token": invitation_token,
        "webhook token": webhook_token,
    }
    secrets["invitation signature"] = invitation_token.rsplit(":", 1)[-1]
    for name, secret in secrets.items():
        leaking = [line for line in logged.splitlines() if secret in line]
        assert not leaking, f"{name} in the logs: {leaking[:3]}"
    for message in inbox.messages:
        assert str(message["Subject"]) not in logged
    assert NEW_PASSWORD not in logged
    assert api_token not in logged
