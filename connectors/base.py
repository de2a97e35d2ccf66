"""The small connector interface every vendor package implements, plus the values it exchanges."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import requests

from connectors.errors import (
    AuthExpired,
    AuthFailed,
    ConnectorError,
    InvalidConfig,
    RateLimited,
    UnexpectedResponse,
    VendorUnavailable,
)
from connectors.http import generic_limit, safe_url

if TYPE_CHECKING:
    from connectors.http import HttpSession

#: Python errors that mean "the vendor's answer did not have the shape the connector parses".
SHAPE_ERRORS = (KeyError, IndexError, TypeError, AttributeError, ValueError)
CANONICAL_STREAMS = ("contacts", "accounts", "tickets", "orders", "articles", "leads")


@dataclass(frozen=True, slots=True)
class Stream:
    """A canonical stream as one vendor exposes it."""

    name: str
    vendor_object: str
    readable: bool = True
    writable: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    """One vendor row: its id and change time, canonical fields, and the untouched vendor payload."""

    external_id: str
    updated_at: datetime
    fields: dict[str, Any]
    raw: dict[str, Any]
    deleted: bool = False
    #: The vendor's opaque resume point once this record is stored (Dataverse: the link that re-reads its
    #: page, or the next page's / the delta link after a page's last row); None says nothing new.
    cursor_token: str | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Resume point: the newest change time seen and the ids already emitted at exactly that time.

    Vendor timestamps are second-precise, so reads use `>=` and skip `seen_ids` instead of `>`,
    which would lose rows sharing the boundary second. A vendor with server-side change tracking hands out
    an opaque `token` (a delta link) instead; the connector that reads it prefers it to `value`.
    """

    value: datetime | None = None
    seen_ids: frozenset[str] = frozenset()
    token: str | None = None

    def advance(self, record: Record) -> Cursor:
        """Return the cursor that covers `record` too (records must come oldest first)."""
        token = record.cursor_token if record.cursor_token is not None else self.token
        if self.value is None or record.updated_at > self.value:
            return Cursor(record.updated_at, frozenset({record.external_id}), token)
        if record.updated_at == self.value:
            return Cursor(self.value, self.seen_ids | {record.external_id}, token)
        return self if token == self.token else Cursor(self.value, self.seen_ids, token)

    def covers(self, record: Record) -> bool:
        """Tell whether `record` was already emitted under this cursor."""
        if self.value is None:
            return False
        return record.updated_at < self.value or (
            record.updated_at == self.value and record.external_id in self.seen_ids
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "value": self.value.isoformat() if self.value else None,
            "seen_ids": sorted(self.seen_ids),
        }
        if self.token is not None:
            data["token"] = self.token
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Cursor:
        if not data:
            return cls()
        token = data.get("token") if isinstance(data.get("token"), str) else None
        if not data.get("value"):
            return cls(token=token)
        return cls(datetime.fromisoformat(data["value"]), frozenset(data.get("seen_ids") or ()), token)


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """The result of one upserted record, keyed by the hub's own external id."""

    external_id: str
    vendor_id: str | None = None
    created: bool = False
    error: str | None = None


@dataclass(slots=True)
class WriteResult:
    outcomes: list[WriteOutcome] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for o in self.outcomes if o.error is None and o.created)

    @property
    def updated(self) -> int:
        return sum(1 for o in self.outcomes if o.error is None and not o.created)

    @property
    def failed(self) -> list[WriteOutcome]:
        return [o for o in self.outcomes if o.error is not None]


@dataclass(frozen=True, slots=True)
class ConfigField:
    """One setting of a connection; the console builds its form from these."""

    name: str
    label: str
    required: bool = False
    secret: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    help: str = ""
    # An endpoint URL: checked as one when entered, and the stored credentials are bound to its origin.
    url: bool = False


def utc(dt: datetime) -> datetime:
    """Return `dt` as an aware UTC datetime truncated to whole seconds (the vendors' precision)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).replace(microsecond=0)


class Connector(abc.ABC):
    """Base class: subclasses declare metadata and implement four methods; HTTP concerns live in http.py."""

    kind: ClassVar[str]
    label: ClassVar[str]
    config_schema: ClassVar[tuple[ConfigField, ...]] = ()
    sensitive_fields: ClassVar[tuple[str, ...]] = ()
    # stream name -> canonical field -> vendor field
    default_field_map: ClassVar[dict[str, dict[str, str]]] = {}

    def __init__(self, config: Mapping[str, Any], *, session: HttpSession) -> None:
        self.config = self.clean_config(config)
        self.session = session
        # Notices for the console (e.g. a deprecated auth flow); never errors.
        self.warnings: list[str] = []
        for name in self.sensitive_fields:
            if self.config.get(name):
                session.add_secret(str(self.config[name]))
        self.field_map = self._merge_field_map(self.config.get("field_map") or {})

    @classmethod
    def clean_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Validate `config` against `config_schema`; unknown or missing keys fail loudly."""
        known = {f.name for f in cls.config_schema} | {"field_map"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise InvalidConfig(f"{cls.kind}: unknown setting(s): {', '.join(unknown)}")
        cleaned: dict[str, Any] = {}
        for f in cls.config_schema:
            value = config.get(f.name, f.default)
            if f.required and value in (None, ""):
                raise InvalidConfig(f"{cls.kind}: setting '{f.name}' is required")
            if f.choices and value is not None and value not in f.choices:
                raise InvalidConfig(f"{cls.kind}: setting '{f.name}' must be one of {', '.join(f.choices)}")
            cleaned[f.name] = value
        cleaned["field_map"] = config.get("field_map") or {}
        return cleaned

    @classmethod
    def redacted_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Return `config` with sensitive values blanked, for display and audit."""
        return {k: ("********" if k in cls.sensitive_fields and v else v) for k, v in config.items()}

    def _merge_field_map(self, overrides: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
        merged = {stream: dict(fields) for stream, fields in self.default_field_map.items()}
        for stream, fields in overrides.items():
            if stream not in merged:
                raise InvalidConfig(f"{self.kind}: field_map names unknown stream '{stream}'")
            merged[stream].update(fields)
        return merged

    def stream(self, name: str, *, for_write: bool = False) -> Stream:
        """Look up a stream by canonical name; refuse writes to read-only streams (a permanent error)."""
        for s in self.streams():
            if s.name == name:
                if for_write and not s.writable:
                    raise ConnectorError(f"{self.kind}: stream '{name}' is read-only", permanent=True)
                if not for_write and not s.readable:
                    raise ConnectorError(f"{self.kind}: stream '{name}' cannot be read", permanent=True)
                return s
        raise ConnectorError(f"{self.kind}: no stream named '{name}'", permanent=True)

    def to_canonical(self, stream: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        return {canon: payload.get(vendor) for canon, vendor in self.field_map.get(stream, {}).items()}

    def to_vendor(self, stream: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        mapping = self.field_map.get(stream, {})
        unknown = sorted(set(fields) - set(mapping))
        if unknown:
            names = ", ".join(unknown)
            raise ConnectorError(f"{self.kind}: stream '{stream}' has no mapping for field(s) {names}", True)
        return {mapping[k]: v for k, v in fields.items()}

    @contextlib.contextmanager
    def expecting(self, what: str) -> Iterator[None]:
        """Turn a lookup or type error while picking a vendor answer apart into UnexpectedResponse naming
        the call, so a changed API shape is a clear permanent error instead of a crash (or silence)."""
        try:
            yield
        except SHAPE_ERRORS as exc:
            detail = f"{type(exc).__name__}: {exc}"[:200]
            raise UnexpectedResponse(
                self.session.redact(f"{self.label} answered {what} in an unexpected shape ({detail})")
            ) from exc

    def rows(self, body: Any, key: str, what: str) -> list[dict[str, Any]]:
        """Return `body[key]` when it is a list of objects; a missing key must not read as "no rows"."""
        rows = body.get(key) if isinstance(body, Mapping) else None
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            found = "no" if rows is None else f"a {type(rows).__name__} as"
            raise UnexpectedResponse(f"{self.label} answered {what} with {found} '{key}' instead of a list")
        return rows

    @abc.abstractmethod
    def check_connection(self) -> None:
        """Authenticate and make one cheap call; raise ConnectorError with a message a person can act on."""

    @abc.abstractmethod
    def streams(self) -> list[Stream]:
        """List the canonical streams this vendor offers."""

    @abc.abstractmethod
    def read(self, stream: str, *, cursor: Cursor | None = None) -> Iterator[Record]:
        """Yield records changed at or after the cursor, oldest first, skipping those it already covers."""

    @abc.abstractmethod
    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Upsert canonical `records` (each with an `external_id`) idempotently; report per record."""


def unseen(records: Iterable[Record], cursor: Cursor | None) -> Iterator[Record]:
    """Drop records the cursor already covers; helper for `>=` reads."""
    for record in records:
        if cursor is None or not cursor.covers(record):
            yield record


class HttpConnector(Connector):
    """Base for plain-HTTP JSON vendors: owns auth headers, one re-auth on 401, and error mapping.

    Subclasses implement `auth_headers`, `error_text` and `rate_limit` (one of the parsers in http.py).
    """

    base_url: str
    #: When True a 401 means "token expired": log in again once. When False credentials are wrong.
    uses_tokens: bool = True

    def auth_headers(self, *, refresh: bool) -> dict[str, str]:
        """Return the Authorization headers, logging in (again) when `refresh` or none is cached."""
        raise NotImplementedError

    def error_text(self, response: requests.Response) -> str:
        """Extract the vendor's error message from its envelope."""
        return f"HTTP {response.status_code}"

    def rate_limit(self, response: requests.Response) -> RateLimited | None:
        """Return RateLimited when `response` is the vendor's quota signal."""
        return generic_limit(response)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else self.base_url + path
        extra = kwargs.pop("headers", {})
        response = self.session.request(
            method, url, headers={**self.auth_headers(refresh=False), **extra}, **kwargs
        )
        if response.status_code == 401 and self.uses_tokens:
            response = self.session.request(
                method, url, headers={**self.auth_headers(refresh=True), **extra}, **kwargs
            )
            if response.status_code == 401:
                raise AuthExpired(self._message(response), status=401)
        if response.status_code == 401:
            raise AuthFailed(self._message(response), status=401)
        limited = self.rate_limit(response)
        if limited is not None:
            raise limited
        if response.status_code >= 500:
            raise VendorUnavailable(self._message(response), status=response.status_code)
        if response.status_code >= 400:
            raise ConnectorError(self._message(response), permanent=True, status=response.status_code)
        return response

    def _message(self, response: requests.Response) -> str:
        try:
            text = self.error_text(response)
        except (ValueError, KeyError, TypeError, AttributeError):
            text = f"HTTP {response.status_code}"
        return self.session.redact(f"{self.label}: {text}")

    def json(self, response: requests.Response) -> Any:
        """Decode a body, turning malformed JSON (cut off, or an HTML page) into a typed, retryable error."""
        try:
            return response.json()
        except ValueError:
            call = f"{response.request.method} {urlsplit(safe_url(response.url)).path}"
            raise VendorUnavailable(
                f"{self.label} returned malformed JSON for {call} (HTTP {response.status_code}): "
                "the answer was cut off or is not JSON",
                status=response.status_code,
            ) from None
