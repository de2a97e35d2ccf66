"""What every messaging-platform simulator shares: the messages it accepted, the webhook it delivers to
(signed by the platform subclass), a record of every delivery, and a revocable bot token.

Platform specifics (payload shapes, signatures, error bodies) live in <platform>/simulator.py.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import requests

from connectors.simulation import SimRequest, SimResponse, Simulator, json_response

logger = logging.getLogger("connectors.simulators")
#: The user a simulator's `deliver` writes as when none is named.
DEMO_SENDER = "+4915112345678"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook request the simulator made, exactly as sent, and what the target answered."""

    url: str
    headers: Mapping[str, str]
    body: bytes
    #: The target's HTTP status; 0 when it could not be reached.
    status: int = 0
    response: bytes = b""
    error: str = ""

    def summary(self) -> dict[str, Any]:
        return {"url": self.url, "status": self.status, "error": self.error, "bytes": len(self.body)}


class PlatformAdmin(Simulator):
    """What every platform simulator's admin side shares: the bot's webhook (the URL pasted into the
    platform's console; `POST /__admin/webhook` sets it, `describe()` shows it, deliveries default to it)
    and the admin dispatch, with the platform's own actions in `channel_admin`."""

    #: Where the platform delivers events; None until registered.
    webhook_url: str | None = None
    #: `verify` for requests to the webhook: True, False or a CA bundle path (a dev server's own CA).
    webhook_verify: bool | str = True

    def register_webhook(self, url: str | None, *, verify: bool | str = True) -> None:
        self.webhook_url = url
        self.webhook_verify = verify

    def target(self, url: str | None) -> str:
        chosen = url or self.webhook_url
        if not chosen:
            raise ValueError(f"{self.vendor} simulator: no webhook registered and no target_url given")
        return chosen

    def admin(self, request: SimRequest) -> SimResponse:
        action = request.path.removeprefix("/__admin/")
        body = request.json() if request.body else {}
        if action == "webhook" and request.method == "POST":
            self.register_webhook(body.get("url"), verify=body.get("verify", True))
            return json_response(200, {"ok": True, "webhook_url": self.webhook_url})
        handled = self.channel_admin(action, request, dict(body))
        return handled if handled is not None else super().admin(request)

    def channel_admin(self, action: str, request: SimRequest, body: dict[str, Any]) -> SimResponse | None:
        """The platform's own admin actions (deliver a message, a status, …); None when not one."""
        return None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "webhook_url": self.webhook_url}


class ChannelSimulator(PlatformAdmin):
    """A messaging platform: records what the bot sent and calls the bot's webhook like the platform."""

    scheme = "https"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Report sent/delivered for accepted messages, as the platform does (to the webhook/callback).
        self.auto_status = True
        self.status_delay = 0.05
        self.token_revoked = False
        self._lock = threading.Lock()
        self._sent: list[dict[str, Any]] = []
        self._deliveries: list[Delivery] = []
        self._http = requests.Session()
        self._http.trust_env = False  # never through a proxy from the environment: targets are local

    # --- what the bot sent ---------------------------------------------------------------------------

    def sent(self) -> list[dict[str, Any]]:
        """Messages the platform accepted from the bot, oldest first."""
        with self._lock:
            return [dict(m) for m in self._sent]

    def record_sent(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._sent.append(message)

    def reset(self) -> None:
        """Forget sent messages and deliveries (between tests sharing one simulator)."""
        with self._lock:
            self._sent.clear()
            self._deliveries.clear()

    # --- webhooks to the bot -------------------------------------------------------------------------

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def wait_deliveries(self, count: int, *, timeout: float = 5.0) -> list[Delivery]:
        """Wait until at least `count` deliveries were made (status reports go out in the background)."""
        deadline = time.monotonic() + timeout
        while len(self.deliveries()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.deliveries()

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Delivery:
        """POST exactly `body` with `headers` to `url` and record the delivery."""
        try:
            answer = self._http.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=10,
                verify=self.webhook_verify,
                allow_redirects=False,
            )
            delivery = Delivery(url, dict(headers), body, answer.status_code, answer.content)
        except requests.RequestException as exc:
            delivery = Delivery(url, dict(headers), body, error=type(exc).__name__)
        with self._lock:
            self._deliveries.append(delivery)
        return delivery

    def replay(self, delivery: Delivery) -> Delivery:
        """Send a recorded delivery again, byte for byte: platforms retry when the bot answers slowly."""
        return self.post(delivery.url, delivery.body, delivery.headers)

    def later(self, *calls: Callable[[], object]) -> None:
        """Run `calls` in order in the background, `status_delay` apart (the platform's status reports)."""

        def run() -> None:
            for call in calls:
                time.sleep(self.status_delay)
                try:
                    call()
                except Exception:  # the platform shrugs off a report it cannot send; never kill the thread
                    logger.exception("%s simulator: status report failed", self.vendor)

        threading.Thread(target=run, name=f"sim-{self.vendor}-status", daemon=True).start()

    def start(self) -> Self:
        super().start()
        server = self._server
        assert server is not None
        report = server.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            # A bot that timed out and hung up is normal traffic for a platform, not a simulator error.
            if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
                report(request, client_address)

        server.handle_error = handle_error  # type: ignore[method-assign]
        return self

    def stop(self) -> None:
        super().stop()
        self._http.close()

    # --- faults --------------------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """The bot's token stops working (revoked or expired) until faults are cleared."""
        super().expire_tokens()
        self.token_revoked = True

    def clear_faults(self) -> None:
        super().clear_faults()
        self.token_revoked = False

    def inject(self, **spec: Any) -> None:
        if spec.get("clear"):
            self.token_revoked = False
        super().inject(**spec)

    # --- admin ---------------------------------------------------------------------------------------

    #: Keys of a `POST /__admin/deliver` body passed on to `deliver_message` (the platform's options).
    deliver_options: tuple[str, ...] = ()

    def deliver_message(
        self, target_url: str | None = None, from_: str = DEMO_SENDER, text: str = "Hallo", **options: Any
    ) -> Delivery:
        """Deliver a user's text message to the webhook, signed as the platform signs it."""
        raise NotImplementedError

    def channel_admin(self, action: str, request: SimRequest, body: dict[str, Any]) -> SimResponse | None:
        if action == "deliver" and request.method == "POST":
            options = {k: body[k] for k in self.deliver_options if k in body}
            delivery = self.deliver_message(
                body.get("target_url"), body.get("from", DEMO_SENDER), body.get("text", "Hallo"), **options
            )
            return json_response(200, delivery.summary())
        if action == "sent" and request.method == "GET":
            return json_response(200, {"sent": self.sent()})
        if action == "deliveries" and request.method == "GET":
            return json_response(200, {"deliveries": [d.summary() for d in self.deliveries()]})
        if action == "reset" and request.method == "POST":
            self.reset()
            return json_response(200, {"ok": True})
        return super().channel_admin(action, request, body)
