"""Shared machinery for the vendor simulators: threaded HTTP(S) server, fault injection, data tables,
deterministic multilingual seed data and a local CA. Vendor specifics live in <vendor>/simulator.py."""

from __future__ import annotations

import bisect
import datetime as dt
import ipaddress
import json
import random
import re
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import requests

# --- requests and responses --------------------------------------------------------------------


@dataclass(slots=True)
class SimRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    match: re.Match[str] | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def json_or_none(self) -> Any:
        """The body as JSON, or None when it is not JSON (each handler answers that its vendor's way)."""
        try:
            return self.json()
        except ValueError:
            return None

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass(slots=True)
class SimResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # drop the connection without answering (outage)


def json_response(status: int, payload: Any, **headers: str) -> SimResponse:
    return SimResponse(status, json.dumps(payload, separators=(",", ":")).encode(), headers=dict(headers))


Route = tuple[str, re.Pattern[str], Callable[[SimRequest], SimResponse]]


def proxy_error_page(request: SimRequest) -> bytes:
    """An HTML error page from a (badly configured) proxy that echoes the request, credentials and all:
    a connector quoting a vendor body in its error message must still not leak a secret."""
    echo = f"{request.method} {request.path}\nAuthorization: {request.headers.get('authorization', '')}\n"
    echo += request.body[:2000].decode("utf-8", "replace")
    return (
        "<html><head><title>502 Proxy Error</title></head><body><h1>Proxy Error</h1>"
        f"<p>The proxy received an invalid response from an upstream server.</p><pre>{escape(echo)}</pre>"
        "</body></html>"
    ).encode()


def reshape_json(payload: Any, keys: tuple[str, ...], kind: str) -> Any:
    """Drop (`missing`) or replace with a scalar (`wrong_type`) the part of `payload` holding the data."""
    if isinstance(payload, list):
        return [] if kind == "missing" else {"unexpected": "shape"}
    if isinstance(payload, dict):
        key = next((k for k in keys if k in payload), None)
        if key is None:
            key = next((k for k, v in payload.items() if isinstance(v, list | dict)), None)
        if key is not None:
            if kind == "missing":
                del payload[key]
            else:
                payload[key] = "unexpected"
    return payload


# --- fault injection ---------------------------------------------------------------------------


#: How an injected "malformed" fault corrupts a successful answer (status and headers stay as they were):
#: truncated  - the body cut in half mid-document (a dropped connection behind a proxy);
#: garbage    - an HTML proxy error page, echoing the request (credentials included), under the vendor's
#:              JSON/XML content type;
#: missing    - syntactically valid, but the element/key holding the data is absent (a changed contract);
#: wrong_type - syntactically valid, but that element/key holds a scalar instead of rows.
MALFORMED_KINDS = ("truncated", "garbage", "missing", "wrong_type")


@dataclass(slots=True)
class ErrorRule:
    status: int
    rate: float = 1.0
    remaining: int | None = None  # None: until cleared


class Faults:
    """Injected misbehaviour, shared by all request threads of one simulator."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)  # noqa: S311 - reproducible fault dice, not security
        self.clear()

    def clear(self) -> None:
        self.latency = 0.0
        self.errors: list[ErrorRule] = []
        self.rate_limit_remaining: int | None = 0  # None: storm until cleared
        self.rate_limit_retry_after = 30
        self.rate_limit_policy = ""  # vendor-specific flavour, e.g. HubSpot "DAILY"
        self.outage: str | None = None  # "503" or "reset"
        self.drip: tuple[int, float] | None = None  # (chunk bytes, seconds between chunks)
        self.malformed: str | None = None  # one of MALFORMED_KINDS: corrupt successful answers
        self.malformed_remaining: int | None = None  # None: until cleared

    def configure(self, spec: Mapping[str, Any]) -> None:
        """Apply an admin spec: latency_ms, errors[{status, rate, count}], rate_limit{count, retry_after},
        outage ("503"/"reset"/None), drip{chunk, delay_ms}, malformed{kind, count}, clear."""
        with self._lock:
            if spec.get("clear"):
                self.clear()
            if "latency_ms" in spec:
                self.latency = float(spec["latency_ms"]) / 1000
            for rule in spec.get("errors", ()):
                rate = float(rule.get("rate", 1.0))
                self.errors.append(ErrorRule(int(rule["status"]), rate, rule.get("count")))
            if "rate_limit" in spec:
                storm = spec["rate_limit"] or {}
                self.rate_limit_remaining = storm.get("count") if storm else 0
                self.rate_limit_retry_after = int(storm.get("retry_after", 30)) if storm else 30
                self.rate_limit_policy = str(storm.get("policy", "")) if storm else ""
            if "outage" in spec:
                self.outage = spec["outage"] or None
            if "malformed" in spec:
                bad = spec["malformed"] or {}
                kind = bad.get("kind") if bad else None
                if kind is not None and kind not in MALFORMED_KINDS:
                    raise ValueError(f"unknown malformed kind {kind!r}; expected one of {MALFORMED_KINDS}")
                self.malformed, self.malformed_remaining = kind, bad.get("count") if bad else None
            if "drip" in spec:
                drip = spec["drip"]
                self.drip = None
                if drip:
                    self.drip = (int(drip.get("chunk", 256)), float(drip.get("delay_ms", 50)) / 1000)

    def take_error(self) -> int | None:
        with self._lock:
            for rule in self.errors:
                if rule.remaining is not None and rule.remaining <= 0:
                    continue
                if self._rng.random() < rule.rate:
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.status
            return None

    def take_malformed(self) -> str | None:
        with self._lock:
            if self.malformed is None:
                return None
            if self.malformed_remaining is not None:
                if self.malformed_remaining <= 0:
                    return None
                self.malformed_remaining -= 1
            return self.malformed

    def take_rate_limit(self) -> bool:
        with self._lock:
            if self.rate_limit_remaining is None:
                return True
            if self.rate_limit_remaining > 0:
                self.rate_limit_remaining -= 1
                return True
            return False


class TokenStore:
    """Bearer tokens with a lifetime; `expire_all` simulates revocation/expiry for re-auth tests."""

    def __init__(self, ttl: float = 7200) -> None:
        self.ttl = ttl
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.issued = 0

    def issue(self, prefix: str = "", *, ttl: float | None = None) -> str:
        token = prefix + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.time() + (self.ttl if ttl is None else ttl)
            self.issued += 1
        return token

    def state(self, token: str) -> str:
        """Return 'valid', 'expired' or 'unknown'."""
        expiry = self._tokens.get(token)
        if expiry is None:
            return "unknown"
        return "valid" if expiry > time.time() else "expired"

    def expire_all(self) -> None:
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)


# --- data --------------------------------------------------------------------------------------


class Row:
    __slots__ = ("cache", "data", "deleted", "id", "ts")

    def __init__(self, id: str, ts: int, data: dict[str, Any]) -> None:
        self.id = id
        self.ts = ts
        self.data = data
        self.deleted = False
        self.cache: dict[Any, bytes] = {}


class Table:
    """Rows kept sorted by (modified second, id) so incremental queries are a bisect, not a scan."""

    def __init__(self, name: str, *, unique: tuple[str, ...] = ()) -> None:
        self.name = name
        self.rows: dict[str, Row] = {}
        self._keys: list[tuple[int, str]] = []
        self._indexes: dict[str, dict[Any, str]] = {f: {} for f in unique}
        self.lock = threading.RLock()

    def __len__(self) -> int:
        return len(self.rows)

    def insert(self, row: Row) -> Row:
        with self.lock:
            self.rows[row.id] = row
            bisect.insort(self._keys, (row.ts, row.id))
            self._index(row)
        return row

    def _index(self, row: Row) -> None:
        for name, index in self._indexes.items():
            value = row.data.get(name)
            if value not in (None, ""):
                index[value] = row.id

    def find(self, name: str, value: Any) -> Row | None:
        row_id = self._indexes[name].get(value)
        return self.rows.get(row_id) if row_id else None

    def update(self, row_id: str, changes: Mapping[str, Any], *, ts: int | None = None) -> Row:
        """Apply `changes` and move the row to the end of the change order."""
        with self.lock:
            row = self.rows[row_id]
            self._keys.pop(bisect.bisect_left(self._keys, (row.ts, row.id)))
            row.data.update(changes)
            row.ts = max(ts if ts is not None else now_s(), self._keys[-1][0] if self._keys else 0)
            row.cache.clear()
            bisect.insort(self._keys, (row.ts, row.id))
            self._index(row)
            return row

    def snapshot(self) -> tuple[dict[str, Row], list[tuple[int, str]], dict[str, dict[Any, str]]]:
        """A copy of the table to `restore` when an all-or-none vendor call fails half-way."""
        with self.lock:
            rows = {}
            for key, row in self.rows.items():
                copy = Row(row.id, row.ts, dict(row.data))
                copy.deleted = row.deleted
                rows[key] = copy
            return rows, list(self._keys), {k: dict(v) for k, v in self._indexes.items()}

    def restore(self, snap: tuple[dict[str, Row], list[tuple[int, str]], dict[str, dict[Any, str]]]) -> None:
        with self.lock:
            self.rows, self._keys, self._indexes = snap[0], snap[1], snap[2]

    def since(self, ts: int | None = None, after_id: str | None = None) -> list[Row]:
        """Rows with (ts, id) >= (ts, after_id) — or strictly after when after_id is given — oldest first."""
        with self.lock:
            if ts is None:
                keys = self._keys
            elif after_id is None:
                keys = self._keys[bisect.bisect_left(self._keys, (ts, "")) :]
            else:
                keys = self._keys[bisect.bisect_right(self._keys, (ts, after_id)) :]
            rows = self.rows
            return [rows[k[1]] for k in keys]

    def newest(self) -> Iterator[Row]:
        with self.lock:
            keys = list(reversed(self._keys))
        for _, row_id in keys:
            yield self.rows[row_id]


def now_s() -> int:
    return int(time.time())


SEED_EPOCH = int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp())


def seed_ts(i: int) -> int:
    """Seeded change times come in groups of three equal seconds, to exercise cursor tie-breaking."""
    return SEED_EPOCH + (i // 3) * 37


LOCALES = ("en", "de", "fr", "es", "ja")
_FIRST = {
    "en": ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry"),
    "de": ("Jürgen", "Anna", "Lukas", "Sophie", "Matthias", "Lea", "Jonas", "Marie"),
    "fr": ("Amélie", "Louis", "Chloé", "Hugo", "Léa", "Théo", "Manon", "Gabriel"),
    "es": ("Lucía", "Mateo", "Sofía", "Martín", "Valeria", "Hugo", "Martina", "Pablo"),
    "ja": ("陽翔", "結衣", "蓮", "陽菜", "湊", "凛", "大翔", "さくら"),
}
_LAST = {
    "en": ("Smith", "Johnson", "Brown", "Taylor", "Wilson", "Clark"),
    "de": ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Größer"),
    "fr": ("Martin", "Bernard", "Dubois", "Lefèvre", "Moreau", "Girard"),
    "es": ("García", "Fernández", "López", "Martínez", "Sánchez", "Pérez"),
    "ja": ("佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺"),
}
_COUNTRY = {"en": "US", "de": "DE", "fr": "FR", "es": "ES", "ja": "JP"}
_COMPANY = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Soylent", "Zenith")
_SUFFIX = {"en": "Inc.", "de": "GmbH", "fr": "SARL", "es": "S.L.", "ja": "株式会社"}
_INDUSTRY = ("Manufacturing", "Retail", "Finance", "Healthcare", "Energy", "Technology")
_SUBJECT = {
    "en": ("Cannot log in", "Invoice is wrong", "Delivery is late", "Product arrived damaged"),
    "de": ("Anmeldung nicht möglich", "Rechnung ist falsch", "Lieferung verspätet", "Ware beschädigt"),
    "fr": ("Connexion impossible", "Facture erronée", "Livraison en retard", "Produit endommagé"),
    "es": ("No puedo iniciar sesión", "Factura incorrecta", "Entrega retrasada", "Producto dañado"),
    "ja": ("ログインできません", "請求書が間違っています", "配送が遅れています", "商品が破損しています"),
}
_ARTICLE = {
    "en": ("How to reset your password", "Return policy", "Shipping times", "Warranty terms"),
    "de": ("Passwort zurücksetzen", "Rückgaberecht", "Lieferzeiten", "Garantiebedingungen"),
    "fr": ("Réinitialiser votre mot de passe", "Politique de retour", "Délais de livraison", "Garantie"),
    "es": ("Cómo restablecer su contraseña", "Política de devoluciones", "Plazos de envío", "Garantía"),
    "ja": ("パスワードの再設定方法", "返品ポリシー", "配送日数", "保証条件"),
}
ORDER_STATUSES = ("Draft", "Activated", "Shipped", "Delivered", "Cancelled")
TICKET_STATUSES = ("New", "Working", "Escalated", "Closed")


class Seed:
    """Deterministic canonical seed rows; each simulator renders them in its vendor's shape."""

    def __init__(self, seed: int = 42) -> None:
        self.seed = seed

    def _rng(self, kind: str, i: int) -> random.Random:
        return random.Random(f"{self.seed}:{kind}:{i}")  # noqa: S311 - deterministic seed data

    def person(self, i: int) -> dict[str, Any]:
        rng = self._rng("person", i)
        loc = LOCALES[i % len(LOCALES)]
        first, last = rng.choice(_FIRST[loc]), rng.choice(_LAST[loc])
        return {
            "first_name": first,
            "last_name": last,
            "email": f"contact{i}@example-{loc}.test",
            "phone": f"+{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
            "locale": loc,
            "country": _COUNTRY[loc],
            "company_index": rng.randrange(10_000),
        }

    def company(self, i: int) -> dict[str, Any]:
        rng = self._rng("company", i)
        loc = LOCALES[i % len(LOCALES)]
        return {
            "name": f"{rng.choice(_COMPANY)} {i} {_SUFFIX[loc]}",
            "website": f"https://company{i}.example-{loc}.test",
            "country": _COUNTRY[loc],
            "industry": rng.choice(_INDUSTRY),
            "locale": loc,
        }

    def ticket(self, i: int) -> dict[str, Any]:
        rng = self._rng("ticket", i)
        loc = LOCALES[i % len(LOCALES)]
        subject = rng.choice(_SUBJECT[loc])
        return {
            "subject": subject,
            "description": f"{subject} (#{i})",
            "status": rng.choice(TICKET_STATUSES),
            "priority": rng.choice(("1", "2", "3", "4")),
            "locale": loc,
            "person_index": rng.randrange(10_000),
        }

    def order(self, i: int) -> dict[str, Any]:
        rng = self._rng("order", i)
        return {
            "number": f"{i + 1:08d}",
            "status": rng.choice(ORDER_STATUSES),
            "amount": round(rng.uniform(10, 5000), 2),
            "currency": rng.choice(("EUR", "USD", "JPY", "GBP")),
            "company_index": rng.randrange(10_000),
        }

    def article(self, i: int) -> dict[str, Any]:
        loc = LOCALES[i % len(LOCALES)]
        topic = (i // len(LOCALES)) % len(_ARTICLE[loc])
        title = _ARTICLE[loc][topic]
        return {
            "title": f"{title} ({i // len(LOCALES)})",
            "body": f"<p>{title}.</p><p>Article {i}, locale {loc}.</p>",
            "locale": loc,
            "url_name": f"article-{i // len(LOCALES)}-{loc}",
        }


DEFAULT_COUNTS: dict[str, int] = {
    "contacts": 10_000,
    "accounts": 10_000,
    "tickets": 10_000,
    "orders": 10_000,
    "articles": 300,
    "leads": 0,
}


# --- TLS ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path


def ensure_tls(directory: Path) -> TlsFiles:
    """Create (once) a local CA and a 127.0.0.1/localhost server certificate signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if files.ca_cert.exists() and files.cert.exists() and files.key.exists():
        return files
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Integration Hub Simulator CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=397))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    files.key.chmod(0o600)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return files


# --- webhooks and the agent helper ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """The hub endpoint a simulator announces agent activity to, and the secret it signs with (if any)."""

    url: str
    secret: str = ""


#: The ticket states the agent helper understands besides each vendor's own values.
AGENT_STATES = ("open", "resolved", "closed")


class SimulatorAdminError(Exception):
    """A simulator's admin endpoint refused the call (unknown ticket, bad state...) or did not answer."""


def admin_post(description: Mapping[str, Any], action: str, payload: Mapping[str, Any]) -> Any:
    """Call a running simulator's admin endpoint (`__admin/<action>`) from another process.

    `description` is the simulator's `describe()` (e.g. from `simulators status --json`); its CA bundle
    is trusted for the https simulators. Raises `SimulatorAdminError` with the simulator's message.
    """
    url = f"{description['base_url']}/__admin/{action}"
    verify: str | bool = description.get("ca_bundle") or True
    try:
        response = requests.post(url, json=dict(payload), timeout=30, verify=verify)
    except requests.RequestException as exc:
        raise SimulatorAdminError(f"{url} did not answer: {type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        message = body.get("error") if isinstance(body, dict) else None
        raise SimulatorAdminError(str(message or f"HTTP {response.status_code}"))
    return body


# --- server ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks
        return

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = SimRequest(
            self.command,
            parts.path,
            # repeated parameters (properties=a&properties=b) arrive comma-joined, like the vendors accept
            {k: ",".join(v) for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            {k.lower(): v for k, v in self.headers.items()},  # handlers look up lower-case names
            body,
        )
        response = self.server.simulator.dispatch(request)
        if response.reset:
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        drip = self.server.simulator.faults.drip
        if drip and not request.path.startswith("/__admin/"):
            chunk, delay = drip
            for start in range(0, len(response.body), chunk):
                self.wfile.write(response.body[start : start + chunk])
                self.wfile.flush()
                time.sleep(delay)
        else:
            self.wfile.write(response.body)

    # http.server looks handlers up by these exact names.
    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch  # noqa: N815


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    simulator: Simulator


class Simulator:
    """Base for one vendor simulator: routing, the fault gate, admin endpoints and lifecycle."""

    vendor: ClassVar[str]
    scheme: ClassVar[str] = "http"

    def __init__(
        self,
        *,
        state_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 42,
        counts: Mapping[str, int] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.seed = Seed(seed)
        self.counts = {**DEFAULT_COUNTS, **(counts or {})}
        self.faults = Faults(seed)
        self.tokens = TokenStore()
        self.tables: dict[str, Table] = {}
        self.routes: list[Route] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> Self:
        server = _Server((self.host, self.port), _Handler)
        server.simulator = self
        if self.scheme == "https":
            tls = ensure_tls(self.state_dir / "tls")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls.cert, tls.key)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sim-{self.vendor}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def ca_bundle(self) -> str | None:
        return str(ensure_tls(self.state_dir / "tls").ca_cert) if self.scheme == "https" else None

    def describe(self) -> dict[str, Any]:
        """Base URL and demo credentials, for `simulators status --json` and for tests."""
        return {"vendor": self.vendor, "base_url": self.base_url, "ca_bundle": self.ca_bundle}

    # request path
    def route(self, method: str, pattern: str, handler: Callable[[SimRequest], SimResponse]) -> None:
        self.routes.append((method, re.compile(pattern + r"\Z"), handler))

    def dispatch(self, request: SimRequest) -> SimResponse:
        if request.path.startswith("/__admin/"):
            return self.admin(request)
        faults = self.faults
        if faults.latency:
            time.sleep(faults.latency)
        if faults.outage == "reset":
            return SimResponse(503, reset=True)
        if faults.outage:
            return SimResponse(503, b"<html><body>Service Unavailable</body></html>", "text/html")
        try:
            found = self.find_route(request.method, request.path)
            if found is not None:
                handler, request.match = found
                return self.gate(request) or self._maybe_corrupt(request, handler(request))
            return self.error(404, "The requested resource does not exist")
        except Exception as exc:  # a simulator bug must surface as a vendor-style 500, not a hang
            return self.error(500, f"Internal simulator error: {exc!r}")

    def find_route(
        self, method: str, path: str
    ) -> tuple[Callable[[SimRequest], SimResponse], re.Match[str]] | None:
        """The first route for `method` whose pattern matches `path`, with its match (also for the
        sub-requests of a vendor's batch call, which run the same handlers)."""
        for route_method, pattern, handler in self.routes:
            if route_method == method:
                match = pattern.match(path)
                if match:
                    return handler, match
        return None

    def gate(self, request: SimRequest) -> SimResponse | None:
        """Apply auth and injected errors/limits before the handler; vendors override `authenticate`."""
        if self.is_public(request):
            return None
        denied = self.authenticate(request)
        if denied is not None:
            return denied
        if self.faults.take_rate_limit():
            return self.rate_limited(request)
        status = self.faults.take_error()
        if status is not None:
            return self.error(status, "Injected failure")
        return None

    def _maybe_corrupt(self, request: SimRequest, response: SimResponse) -> SimResponse:
        if not 200 <= response.status < 300 or self.is_public(request):
            return response
        kind = self.faults.take_malformed()
        return response if kind is None else self.malformed(request, response, kind)

    def malformed(self, request: SimRequest, response: SimResponse, kind: str) -> SimResponse:
        """Corrupt a successful answer as `kind` says (see MALFORMED_KINDS); XML vendors override."""
        if kind == "truncated":
            body = response.body[: len(response.body) // 2]
        elif kind == "garbage":
            body = proxy_error_page(request)
        else:
            body = json.dumps(reshape_json(json.loads(response.body), self.payload_keys, kind)).encode()
        return SimResponse(response.status, body, response.content_type, dict(response.headers))

    #: Top-level keys that hold a JSON answer's data, most specific first (for missing/wrong_type).
    payload_keys: ClassVar[tuple[str, ...]] = ()

    def is_public(self, request: SimRequest) -> bool:
        return False

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        return None

    def error(self, status: int, message: str) -> SimResponse:
        return json_response(status, {"error": message})

    def rate_limited(self, request: SimRequest) -> SimResponse:
        retry_after = str(self.faults.rate_limit_retry_after)
        return json_response(429, {"error": "rate limited"}, **{"Retry-After": retry_after})

    # control API (Python; mirrored by /__admin/ endpoints for subprocess use)
    def inject(self, **spec: Any) -> None:
        """See `Faults.configure`; also `expire_tokens=True`."""
        if spec.pop("expire_tokens", False):
            self.expire_tokens()
        if "token_ttl" in spec:
            self.tokens.ttl = float(spec.pop("token_ttl"))
        self.faults.configure(spec)

    def clear_faults(self) -> None:
        self.faults.configure({"clear": True})
        self.tokens.ttl = TokenStore().ttl

    def expire_tokens(self) -> None:
        self.tokens.expire_all()

    def count(self, stream: str) -> int:
        return sum(1 for row in self.tables[stream].rows.values() if not row.deleted)

    def touch(self, stream: str, *, count: int = 1, ids: list[str] | None = None) -> list[str]:
        """Modify records (newest change time, same second) so incremental reads see them."""
        table = self.tables[stream]
        chosen = ids or [row.id for row in table.since()[:count]]
        ts = now_s()
        for row_id in chosen:
            self.mutate(stream, row_id, ts=ts)
        return chosen

    def mutate(self, stream: str, row_id: str, *, ts: int) -> None:
        self.tables[stream].update(row_id, {}, ts=ts)

    def delete(self, stream: str, row_id: str) -> None:
        table = self.tables[stream]
        table.rows[row_id].deleted = True
        table.update(row_id, {})

    def admin(self, request: SimRequest) -> SimResponse:
        action = request.path.removeprefix("/__admin/")
        body = request.json() if request.body else {}
        if action == "faults" and request.method == "POST":
            self.inject(**body)
            return json_response(200, {"ok": True})
        if action == "touch" and request.method == "POST":
            ids = self.touch(body["stream"], count=body.get("count", 1), ids=body.get("ids"))
            return json_response(200, {"ids": ids})
        if action == "delete" and request.method == "POST":
            self.delete(body["stream"], body["id"])
            return json_response(200, {"ok": True})
        if action == "state":
            return json_response(200, {**self.describe(), "counts": {s: self.count(s) for s in self.tables}})
        return json_response(404, {"error": f"unknown admin action {action}"})


class TicketSimulator(Simulator):
    """Base for the ticketing simulators (ServiceNow, Salesforce, HubSpot): an agent helper that comments
    on a ticket and/or changes its state, and announces it to the hub's webhook as the vendor would.

    Admin endpoints: `POST __admin/webhook {"url", "secret"}` (url null: stop announcing),
    `GET __admin/webhooks` (what was sent), `POST __admin/agent {"ticket", "body", "public", "state",
    "author"}` (see `agent`). Announcements go out once, synchronously; without a webhook the hub polls.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Where agent activity is announced (the hub's webhook URL); None: the hub has to poll.
        self.webhook: WebhookTarget | None = None
        #: Every announcement tried, oldest first: {"id", "url", "status", "error"} (for tests and demos).
        self.webhook_log: list[dict[str, Any]] = []

    def register_webhook(self, url: str | None, *, secret: str = "") -> None:
        """Announce agent activity to `url` from now on (None: stop announcing; the hub polls)."""
        self.webhook = WebhookTarget(url, secret) if url else None

    def webhook_secret(self) -> str:
        """The secret deliveries are signed with: the registered one (vendors with their own override)."""
        return self.webhook.secret if self.webhook else ""

    def send_webhook(self, event_id: str, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """POST one announcement to the registered URL, once (no retry: the hub's poll is the safety net).

        Synchronous, so a test or the demo knows the hub has it when the agent helper returns.
        """
        target = self.webhook
        if target is None:
            return {"id": event_id, "url": None, "status": None, "error": "no webhook registered"}
        entry: dict[str, Any] = {"id": event_id, "url": target.url, "status": None, "error": None}
        try:
            # One connection per announcement, like a vendor's webhook sender: a kept-alive socket would
            # pin a request thread (and its database connections) of the receiving test server. A session of
            # its own, not a pooled one: a receiver that closes after the answer without saying so would
            # leave a dead socket in the pool, and the next POST (never retried) would fail on it.
            with requests.Session() as http:
                http.trust_env = False  # never through a proxy from the environment: targets are local
                response = http.post(
                    target.url,
                    data=body,
                    headers={**headers, "Connection": "close"},
                    timeout=10,
                    allow_redirects=False,
                )
            entry["status"] = response.status_code
        except requests.RequestException as exc:
            entry["error"] = type(exc).__name__
        self.webhook_log.append(entry)
        return entry

    @staticmethod
    def ticket_row(table: Table, ticket: str, *, external: str, number: str | None = None) -> Row:
        """Find a ticket by vendor id, by the hub's external id (field `external`) or by its number (field
        `number`); KeyError when there is none or it is deleted."""
        row = table.rows.get(ticket) or table.find(external, ticket)
        if row is None and number is not None:
            row = next((r for r in table.rows.values() if r.data.get(number) == ticket), None)
        if row is None or row.deleted:
            raise KeyError(ticket)
        return row

    @staticmethod
    def agent_check(body: str, state: str | None) -> None:
        """Refuse an agent call that would neither comment nor change the state."""
        if not body.strip() and not state:
            raise ValueError("give a comment body, a state, or both")

    def agent(
        self, *, ticket: str, body: str = "", public: bool = True, state: str | None = None, author: str = ""
    ) -> dict[str, Any]:
        """Act as a support agent on `ticket` (vendor id or number): add a comment (public, or a private
        note) and/or change its state ("open", "resolved", "closed" or a vendor value), then announce it
        to the registered webhook. Returns {"ticket", "comment_id", "state", "webhook"}; KeyError for an
        unknown ticket, ValueError for a bad state or an empty call."""
        raise NotImplementedError(f"{self.vendor} has no tickets")

    def admin(self, request: SimRequest) -> SimResponse:
        action = request.path.removeprefix("/__admin/")
        if action not in ("webhook", "webhooks", "agent"):
            return super().admin(request)
        body = request.json_or_none() if request.body else {}
        if not isinstance(body, dict):
            return json_response(400, {"error": "the body must be a JSON object"})
        if action == "webhook" and request.method == "POST":
            self.register_webhook(body.get("url"), secret=str(body.get("secret") or ""))
            return json_response(200, {"ok": True})
        if action == "webhooks" and request.method == "GET":
            return json_response(200, {"deliveries": self.webhook_log})
        if action == "agent" and request.method == "POST":
            return self._admin_agent(body)
        return super().admin(request)

    def _admin_agent(self, body: dict[str, Any]) -> SimResponse:
        if not isinstance(body.get("ticket"), str | int):
            return json_response(400, {"error": "give {ticket, body, public, state}"})
        try:
            result = self.agent(
                ticket=str(body["ticket"]),
                body=str(body.get("body") or ""),
                public=bool(body.get("public", True)),
                state=str(body["state"]) if body.get("state") else None,
                author=str(body.get("author") or ""),
            )
        except KeyError:
            return json_response(404, {"error": f"no ticket {body['ticket']!r}"})
        except (ValueError, NotImplementedError) as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(200, result)
