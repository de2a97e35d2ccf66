"""Real SIEM receivers on loopback for the SIEM tests and the benchmark: a syslog-over-TLS listener (RFC 5425,
optionally demanding a client certificate) and an HTTPS receiver speaking Splunk HEC and the signed webhook.

Certificates come from `make_pki` (a CA, a 127.0.0.1 server certificate and a client certificate, made with
`cryptography`). Receivers record what they accepted, in arrival order, and can be stopped and started
again on the same port (an outage).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import http.server
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    server_cert: Path
    server_key: Path
    ca_file: Path
    client_cert_pem: str
    client_key_pem: str


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert(
    subject: str, key: Any, issuer: x509.Name, issuer_key: Any, *, ca: bool, usage: Any = None
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if subject == "127.0.0.1":
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SIEM test CA")])
    ca = _cert("SIEM test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("127.0.0.1", server_key, ca_name, ca_key, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("hub", client_key, ca_name, ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    files = (directory / "server.pem", directory / "server.key", directory / "ca.pem")
    files[0].write_text(server.public_bytes(serialization.Encoding.PEM).decode())
    files[1].write_text(_key_pem(server_key))
    files[1].chmod(0o600)
    files[2].write_text(ca_pem)
    return Pki(
        ca_pem=ca_pem,
        server_cert=files[0],
        server_key=files[1],
        ca_file=files[2],
        client_cert_pem=client.public_bytes(serialization.Encoding.PEM).decode(),
        client_key_pem=_key_pem(client_key),
    )


def server_context(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=pki.ca_file)
    return context


def _light(event: dict[str, Any]) -> dict[str, Any]:
    return {"id": event["id"], "seq": event["seq"]}


# --- RFC 5424 / 5425 -------------------------------------------------------------------------------------
_HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
)
_SD_PARAM = re.compile(r'(\w+)="((?:[^"\\\]]|\\.)*)"')


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Octet-counted frames (MSG-LEN SP SYSLOG-MSG) in `buffer`; returns (frames, the incomplete rest)."""
    frames: list[bytes] = []
    while True:
        space = buffer.find(b" ")
        if space <= 0:
            return frames, buffer
        length_text = buffer[:space]
        if not length_text.isdigit() or length_text.startswith(b"0"):
            raise ValueError(f"bad MSG-LEN {length_text[:10]!r}")
        length = int(length_text)
        if len(buffer) < space + 1 + length:
            return frames, buffer
        frames.append(buffer[space + 1 : space + 1 + length])
        buffer = buffer[space + 1 + length :]


def parse_syslog(message: bytes) -> dict[str, Any]:
    """Parse one RFC 5424 message as this hub writes it (one SD element, a BOM and JSON as MSG)."""
    match = _HEADER.match(message)
    if match is None:
        raise ValueError(f"not RFC 5424: {message[:60]!r}")
    rest = message[match.end() :]
    if not rest.startswith(b"["):
        raise ValueError("no structured data")
    end = rest.index(b"] ")
    sd_text = rest[1:end].decode()
    sd_id, _, params = sd_text.partition(" ")
    msg = rest[end + 2 :]
    if not msg.startswith(BOM):
        raise ValueError("MSG without BOM")
    pri = int(match["pri"])
    return {
        "facility": pri // 8,
        "severity": pri % 8,
        "timestamp": match["ts"].decode(),
        "hostname": match["host"].decode(),
        "app": match["app"].decode(),
        "msgid": match["msgid"].decode(),
        "sd_id": sd_id,
        "sd": {k: re.sub(r"\\(.)", r"\1", v) for k, v in _SD_PARAM.findall(params)},
        "event": json.loads(msg[len(BOM) :]),
    }


@dataclass
class SyslogTlsListener:
    """A syslog-over-TLS receiver on 127.0.0.1; `messages` holds the parsed messages in arrival order."""

    pki: Pki
    require_client_cert: bool = False
    port: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0  # handshakes that failed (e.g. no client certificate)
    connections: int = 0
    ack_delay: float = 0.0  # seconds to wait before answering a batch's close_notify (a batch in flight)
    light: bool = False  # keep only each event's id and seq (the benchmark's 100,000 events)
    pending_acks: int = 0  # batches read whole whose sender still waits for the answer
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> SyslogTlsListener:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        sock.settimeout(0.1)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _serve(self, sock: socket.socket) -> None:
        context = server_context(self.pki, require_client_cert=self.require_client_cert)
        while self._sock is sock:
            try:
                conn, _addr = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(context, conn), daemon=True).start()

    def _handle(self, context: ssl.SSLContext, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            with self._lock:
                self.refused += 1
            conn.close()
            return
        with self._lock:
            self.connections += 1
        buffer = b""
        try:
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                frames, buffer = split_frames(buffer + chunk)
                parsed = [parse_syslog(frame) for frame in frames]
                if self.light:
                    parsed = [{"event": _light(m["event"])} for m in parsed]
                with self._lock:
                    self.messages.extend(parsed)
            if self.ack_delay:
                with self._lock:
                    self.pending_acks += 1
                time.sleep(self.ack_delay)
                with self._lock:
                    self.pending_acks -= 1
            tls.unwrap().close()  # answer the sender's close_notify: the batch is read
        except (ssl.SSLError, OSError, ValueError):
            tls.close()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m["event"] for m in self.messages]


# --- HTTPS (Splunk HEC and webhook) ----------------------------------------------------------------------
def decode_concatenated(body: bytes) -> list[dict[str, Any]]:
    """Splunk HEC batches: JSON objects one after another (no separator needed)."""
    decoder = json.JSONDecoder()
    text, index, objects = body.decode(), 0, []
    while index < len(text):
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            break
        obj, index = decoder.raw_decode(text, index)
        objects.append(obj)
    return objects


@dataclass
class HttpsReceiver:
    """An HTTPS server on 127.0.0.1 playing a Splunk HEC (token) or a webhook receiver (HMAC); `fail_with`
    makes it answer that status (e.g. 503) instead of accepting."""

    pki: Pki
    mode: str  # "hec" or "webhook"
    secret: str  # the HEC token or the webhook HMAC secret
    require_client_cert: bool = False
    port: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    hec_wrappers: list[dict[str, Any]] = field(default_factory=list)
    fail_with: int | None = None
    light: bool = False  # keep only each event's id and seq (the benchmark's 100,000 events)
    _server: http.server.ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}" + ("" if self.mode == "hec" else "/siem/events")

    def start(self) -> HttpsReceiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, payload = receiver.accept(self.path, dict(self.headers.items()), body)
                self.reply(status, payload)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler, bind_and_activate=False)
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        server.socket = server_context(self.pki, require_client_cert=self.require_client_cert).wrap_socket(
            server.socket, server_side=True
        )
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accept(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if self.fail_with is not None:
            with self._lock:
                self.refused.append(self.fail_with)
            return self.fail_with, {"text": "Server is busy", "code": 9}
        if self.mode == "hec":
            if path != "/services/collector/event":
                return 404, {"text": "not found", "code": 404}
            if headers.get("Authorization") != f"Splunk {self.secret}":
                with self._lock:
                    self.refused.append(403)
                return 403, {"text": "Invalid token", "code": 4}
            try:
                wrappers = decode_concatenated(body)
            except ValueError:
                return 400, {"text": "Invalid data format", "code": 6}
            with self._lock:
                if self.light:
                    self.events.extend(_light(w["event"]) for w in wrappers)
                else:
                    self.hec_wrappers.extend(wrappers)
                    self.events.extend(w["event"] for w in wrappers)
            return 200, {"text": "Success", "code": 0}
        timestamp = headers.get("X-Hub-Timestamp", "")
        expected = (
            "sha256="
            + hmac.new(self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        )
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
        if not (fresh and hmac.compare_digest(expected, headers.get("X-Hub-Signature-256", ""))):
            with self._lock:
                self.refused.append(401)
            return 401, {"error": "bad signature"}
        lines = [json.loads(line) for line in body.decode().splitlines() if line]
        with self._lock:
            self.events.extend(_light(e) for e in lines) if self.light else self.events.extend(lines)
        return 200, {"accepted": len(lines)}

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)


class SilentListener:
    """A TCP listener on 127.0.0.1 that accepts and never answers (a stalled SIEM): a TLS client's handshake
    waits until its own timeout. `open` counts the connections whose sender is still waiting; `stop` closes
    them all, which ends every wait at once."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._closed_by_peer: set[int] = set()
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> SilentListener:
        self._thread.start()
        return self

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self._conns)

    @property
    def open(self) -> int:
        with self._lock:
            return len(self._conns) - len(self._closed_by_peer)

    def stop(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._sock.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # wakes the draining thread's recv
                conn.close()

    def _serve(self) -> None:
        while self._running:
            try:
                conn, _addr = self._sock.accept()
            except TimeoutError:
                continue
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        """Read (and drop) what the sender writes, to notice when it gives up and closes."""
        try:
            while conn.recv(65536):
                pass
        except OSError:
            return  # closed by stop()
        with self._lock:
            self._closed_by_peer.add(id(conn))


def assert_in_order_without_gaps(events: list[dict[str, Any]], *, first: int, last: int) -> list[int]:
    """Every seq first..last present; after de-duplication by `id` (first occurrence kept) strictly in
    order. Returns the seqs as received (duplicates included)."""
    seqs = [int(e["seq"]) for e in events]
    seen: set[str] = set()
    unique = []
    for event in events:
        if event["id"] not in seen:
            seen.add(event["id"])
            unique.append(int(event["seq"]))
    assert unique == list(range(first, last + 1)), f"out of order or gaps: {unique[:20]}…"
    return seqs
