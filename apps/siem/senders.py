"""Sending batches to a SIEM: one small sender per destination kind, all through the SSRF guard, TLS verified.

A sender is opened once per delivery run and used for its batches (syslog keeps one TLS connection); `send`
returns only when the SIEM acknowledged the whole batch, else raises `SendFailed`. TLS is always verified:
a destination's CA bundle, when given, is its only trust anchor (a private SIEM CA); a client certificate
and key give mutual TLS. Key material is written to a private temporary directory for the run (ssl needs
files) and removed when the sender closes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
from django.conf import settings

from apps.core.outbound import guarded_session
from apps.siem import formats
from apps.siem.models import SiemDestination, SiemKind
from connectors.errors import ConnectorError
from connectors.http import HttpSession, safe_url

#: HTTP statuses worth another try (CONVENTIONS.md); any other 4xx needs someone to fix the destination.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
#: Splunk HEC answer codes (the `code` of the JSON reply) and what they mean, for the error shown.
HEC_CODES = {
    1: "token disabled",
    2: "token is required",
    3: "invalid authorization",
    4: "invalid token",
    5: "no data",
    6: "invalid data format",
    7: "incorrect index",
    8: "internal server error",
    9: "server is busy",
    10: "data channel is missing",
    11: "invalid data channel",
    12: "event field is required",
    13: "event field cannot be blank",
    14: "ACK is disabled",
}


class SendFailed(Exception):
    """The batch was not acknowledged; `permanent` when retrying cannot help until someone fixes the setup."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after


class Sender:
    def __init__(self, destination: SiemDestination) -> None:
        self.destination = destination
        self.hostname = settings.HUB_SIEM_HOSTNAME
        self._dir: Path | None = None
        self.secrets = [s for s in (destination.token, destination.hmac_secret, destination.client_key) if s]

    # Key material for ssl / requests, which only read files.
    def _file(self, name: str, content: str) -> str:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="hub-siem-"))  # mode 0700
        path = self._dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        return str(path)

    def client_cert_files(self) -> tuple[str, str] | None:
        d = self.destination
        if not (d.client_cert and d.client_key):
            return None
        return self._file("client.pem", d.client_cert), self._file("client.key", d.client_key)

    def ssl_context(self) -> ssl.SSLContext:
        d = self.destination
        if d.ca_bundle.strip():
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
            context.load_verify_locations(cadata=d.ca_bundle)
        else:
            context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        files = self.client_cert_files()
        if files is not None:
            context.load_cert_chain(*files)
        return context

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text[:480]

    def send(self, events: Sequence[Mapping[str, Any]], *, test: bool = False) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyslogTlsSender(Sender):
    """RFC 5424 messages, octet-counted (RFC 5425), on one TLS connection per batch.

    RFC 5425 has no application acknowledgement, so each batch ends with the TLS closure of RFC 5425 §4.4:
    the batch counts as delivered once the receiver answered our close_notify with its own, which it can
    only do after reading everything before it. A receiver that dies mid-batch, refuses our certificate
    (TLS 1.3 reports that after the handshake) or closes without close_notify fails the batch, which is sent
    again whole.
    """

    def connect(self) -> socket.socket:
        d = self.destination
        host, port = d.host, int(d.port or 6514)
        try:
            # The SSRF guard: refuses private and metadata addresses unless allow-listed; connect to what it
            # checked (a DNS answer that changes between check and connect cannot steer us), verify by name.
            pinned = guarded_session().resolve_checked(host, port)
        except ConnectorError as exc:
            raise SendFailed(str(exc), permanent=exc.permanent) from None
        try:
            return socket.create_connection((pinned or host, port), timeout=settings.HUB_SIEM_TIMEOUT_SECONDS)
        except OSError as exc:
            raise SendFailed(f"Cannot reach {host}:{port} ({type(exc).__name__})") from None

    def send(self, events: Sequence[Mapping[str, Any]], *, test: bool = False) -> None:
        payload = formats.syslog_payload(events, hostname=self.hostname, test=test)
        d = self.destination
        sock = self.connect()
        try:
            # TLS over memory BIOs: Python's SSLSocket.unwrap() reports success after two tries even when
            # the peer never answered, and the answer is our acknowledgement.
            tls = _Tls(sock, self.ssl_context(), server_hostname=d.host)
            tls.handshake()
            tls.write(payload)
            tls.close_and_wait_for_peer()
        except ssl.SSLCertVerificationError as exc:
            raise SendFailed(f"TLS verification failed for {d.host}:{d.port}: {exc.verify_message}") from None
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise SendFailed(f"Sending to {d.host}:{d.port} failed ({reason})") from None
        finally:
            sock.close()


class _Tls:
    """A TLS client on a blocking socket through memory BIOs: we see every byte and every alert."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, *, server_hostname: str) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionAbortedError("closed by the receiver without TLS close_notify")
        self.incoming.write(data)

    def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()

    def write(self, payload: bytes) -> None:
        view = memoryview(payload)
        while view:
            written = self.obj.write(view[:65536])
            self._flush()
            view = view[written:]

    def close_and_wait_for_peer(self) -> None:
        """Send close_notify and wait for the receiver's (RFC 5425 §4.4: it MUST reply). A TLS alert instead
        (e.g. our client certificate refused, which TLS 1.3 reports only now) raises SSLError."""
        with contextlib.suppress(ssl.SSLWantReadError):
            self.obj.unwrap()  # sends our close_notify; its "success" does not mean the peer answered
        self._flush()
        while True:
            try:
                self.obj.read(65536)  # a syslog receiver sends nothing else; anything it does is ignored
            except ssl.SSLZeroReturnError:
                return  # the receiver's close_notify
            except ssl.SSLWantReadError:
                self._fill()


class HttpSender(Sender):
    """HTTPS POST of one batch; success is a 2xx (and, for HEC, `code` 0)."""

    content_type = "application/json"

    def __init__(self, destination: SiemDestination) -> None:
        super().__init__(destination)
        timeout = float(settings.HUB_SIEM_TIMEOUT_SECONDS)
        self.session: HttpSession = guarded_session(timeout=(timeout, timeout), max_retries=0)
        for secret in self.secrets:
            self.session.add_secret(secret)
        self.verify: str | bool = (
            self._file("ca.pem", destination.ca_bundle) if destination.ca_bundle.strip() else True
        )
        self.cert = self.client_cert_files()

    def url(self) -> str:
        return self.destination.url

    def body_and_headers(
        self, events: Sequence[Mapping[str, Any]], *, test: bool
    ) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    def send(self, events: Sequence[Mapping[str, Any]], *, test: bool = False) -> None:
        body, headers = self.body_and_headers(events, test=test)
        url = self.url()
        if not url.lower().startswith("https://"):
            raise SendFailed("Only https URLs are allowed for SIEM destinations", permanent=True)
        try:
            response = self.session.post(
                url,
                data=body,
                headers={"Content-Type": self.content_type, **headers},
                verify=self.verify,
                cert=self.cert,
            )
        except ConnectorError as exc:
            raise SendFailed(self.redact(str(exc)), permanent=exc.permanent) from None
        except requests.RequestException as exc:
            raise SendFailed(f"Sending to {safe_url(url)} failed ({type(exc).__name__})") from None
        self.check(response)

    def check(self, response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        retry_after = response.headers.get("Retry-After", "")
        raise SendFailed(
            f"{safe_url(response.url or self.url())} answered HTTP {status}",
            permanent=400 <= status < 500 and status not in RETRYABLE_STATUSES,
            retry_after=float(retry_after) if retry_after.isdigit() else None,
        )

    def close(self) -> None:
        self.session.close()
        super().close()


class HecSender(HttpSender):
    def url(self) -> str:
        base = self.destination.url.rstrip("/")
        return base if base.endswith("/services/collector/event") else base + "/services/collector/event"

    def body_and_headers(
        self, events: Sequence[Mapping[str, Any]], *, test: bool
    ) -> tuple[bytes, dict[str, str]]:
        return (
            formats.hec_payload(events, hostname=self.hostname),
            {"Authorization": f"Splunk {self.destination.token or ''}"},
        )

    def check(self, response: requests.Response) -> None:
        try:
            code = response.json().get("code")
        except (ValueError, AttributeError):
            code = None
        if response.status_code == 200 and code == 0:
            return
        if response.status_code == 200:
            raise SendFailed(f"Splunk HEC answered 200 without success code (code {code!r})")
        if code in HEC_CODES:
            status = response.status_code
            raise SendFailed(
                f"Splunk HEC answered HTTP {status}: {HEC_CODES[code]} (code {code})",
                permanent=400 <= status < 500 and status not in RETRYABLE_STATUSES,
            )
        super().check(response)


class WebhookSender(HttpSender):
    content_type = "application/x-ndjson"

    def body_and_headers(
        self, events: Sequence[Mapping[str, Any]], *, test: bool
    ) -> tuple[bytes, dict[str, str]]:
        body = formats.jsonl_payload(events)
        timestamp = str(int(time.time()))
        signature = formats.webhook_signature(self.destination.hmac_secret or "", timestamp, body)
        return body, {"X-Hub-Timestamp": timestamp, "X-Hub-Signature-256": signature}


SENDERS: dict[str, type[Sender]] = {
    SiemKind.SYSLOG_TLS: SyslogTlsSender,
    SiemKind.SPLUNK_HEC: HecSender,
    SiemKind.WEBHOOK: WebhookSender,
}


def sender_for(destination: SiemDestination) -> Sender:
    return SENDERS[destination.kind](destination)
