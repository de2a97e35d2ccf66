"""SAP S/4HANA over SAP's standard OData V2 APIs: API_BUSINESS_PARTNER (persons with their address e-mail →
contacts, writable) and API_SALES_ORDER_SRV (A_SalesOrder with to_Item → orders, for the chat's order status).

Where SAP's own client, pyodata, serves and where plain requests do:

- **pyodata builds each service's client from the system's `$metadata`** (fetched through our HttpSession, so
  sap-client, auth, the SSRF guard and error mapping are ours, then handed to `pyodata.Client(metadata=...)`);
  field maps are checked against that model, so a system whose API differs is refused at check time.
- **Reads are composed by pyodata, sent and read by us**: pyodata builds each query from the model (entity
  set, `$filter`, `$orderby`, `$top`, `$expand`, `$inlinecount`); we send it through the HttpSession, follow
  `__next` (server-driven paging, same origin only) and keep the JSON rows (the record's `raw`). pyodata's
  own `execute()` would also build a typed proxy per entity, which costs half the read throughput
  (bench_connectors) for values the record does not use. Paging is keyset, not `$skip`:
  `LastChangeDate`+`LastChangeTime` (A_BusinessPartner keeps date and time apart) or `LastChangeDateTime`
  (A_SalesOrder), ordered with the key as tie-breaker, and a page ends at `(time, key)` so rows sharing a
  timestamp are neither lost nor repeated.
- **Writes are `$batch` change sets built and parsed here**: pyodata's batch handler raises on the first
  failed change set (the other records' results are lost) and it has no CSRF handling. One change set per
  record (SAP commits each as its own LUW), so one record's validation error does not roll back the others.
- **CSRF**: a `GET` with `X-CSRF-Token: Fetch` first; the token goes with the session cookies on modifying
  requests and is fetched again once on 403 "CSRF token validation failed".
- **Auth**: Basic, or OAuth 2.0 client credentials against a BTP (XSUAA) token URL; the token is cached until
  shortly before it expires and fetched again once on 401.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pyodata
import requests
from lxml import etree
from pyodata.exceptions import PyODataException
from pyodata.v2.model import Config

from connectors.base import ConfigField, Connector, Cursor, Record, Stream, WriteOutcome, WriteResult, utc
from connectors.errors import (
    AuthExpired,
    AuthFailed,
    ConnectorError,
    InvalidConfig,
    UnexpectedResponse,
    VendorUnavailable,
)
from connectors.http import HttpSession, generic_limit, url_origin
from connectors.sap_odata.odata import (
    datetime_literal,
    datetimeoffset_literal,
    parse_date_json,
    parse_duration,
    quote,
    time_literal,
)

BP, SO = "API_BUSINESS_PARTNER", "API_SALES_ORDER_SRV"
#: stream -> (service, entity set, writable)
STREAMS: dict[str, tuple[str, str, bool]] = {
    "contacts": (BP, "A_BusinessPartner", True),
    "orders": (SO, "A_SalesOrder", False),
}
EXPAND = {"contacts": "to_BusinessPartnerAddress/to_EmailAddress", "orders": "to_Item"}
ORDER_BY = {
    "contacts": "LastChangeDate,LastChangeTime,BusinessPartner",
    "orders": "LastChangeDateTime,SalesOrder",
}
#: Entity types whose properties a stream's field map may name (a person's address and e-mail are flattened).
FIELD_TYPES = {
    "contacts": ("A_BusinessPartnerType", "A_BusinessPartnerAddressType", "A_AddressEmailAddressType"),
    "orders": ("A_SalesOrderType",),
}
#: OverallSDProcessStatus (GBSTK) as the chat tells a customer; a fully rejected order is "Rejected".
ORDER_STATUS = {"A": "Open", "B": "In process", "C": "Completed", "": "Open"}
LOOKUP_BATCH = 40  # external ids per lookup query (URL length)
WRITE_BATCH = 100  # change sets per $batch
EXT_ID_MAX = 20  # BusinessPartnerIDByExtSystem is CHAR 20
TOKEN_MARGIN_S = 60


class SapODataError(ConnectorError):
    """SAP refused the request (its error JSON): `code` is SAP's message id, `details` the errordetails."""

    def __init__(self, message: str, *, status: int, code: str, details: Sequence[str] = ()) -> None:
        super().__init__(message, permanent=True, status=status, code=code)
        self.details = list(details)


class _Unauthorized(Exception):
    """HTTP 401: the caller decides between logging in again (OAuth) and AuthFailed (Basic)."""


class _CsrfRequired(Exception):
    """HTTP 403 with `x-csrf-token: Required`: fetch a token again and resend once."""


class SapODataConnector(Connector):
    kind = "sap_odata"
    label = "SAP S/4HANA OData"
    config_schema = (
        ConfigField(
            "host_url",
            "Host URL",
            required=True,
            url=True,
            help="https://<host>:<port> of the S/4HANA system or its API endpoint (without /sap/opu).",
        ),
        ConfigField("service_root", "Service root path", default="/sap/opu/odata/sap"),
        ConfigField(
            "sap_client",
            "SAP client (sap-client)",
            default="",
            help="Three digits, e.g. 100; empty uses the system's default client.",
        ),
        ConfigField("auth", "Auth", default="basic", choices=("basic", "oauth")),
        ConfigField("username", "User (Basic)"),
        ConfigField("password", "Password (Basic)", secret=True),
        ConfigField(
            "token_url",
            "OAuth token URL (BTP)",
            url=True,
            help="The service key's uaa.url + /oauth/token, for OAuth 2.0 client credentials.",
        ),
        ConfigField("client_id", "OAuth client id"),
        ConfigField("client_secret", "OAuth client secret", secret=True),
        ConfigField("page_size", "Rows per page", default=500),
    )
    sensitive_fields = ("password", "client_secret")
    default_field_map = {
        "contacts": {
            "first_name": "FirstName",
            "last_name": "LastName",
            "email": "EmailAddress",
            "country": "Country",
            "locale": "CorrespondenceLanguage",
            "external_ref": "BusinessPartnerIDByExtSystem",
        },
        "orders": {
            "number": "SalesOrder",
            "status": "OverallSDProcessStatus",
            "amount": "TotalNetAmount",
            "currency": "TransactionCurrency",
            "customer_id": "SoldToParty",
            "customer_reference": "PurchaseOrderByCustomer",
            "delivery_status": "OverallTotalDeliveryStatus",
        },
    }

    def __init__(self, config: Mapping[str, Any], *, session: HttpSession) -> None:
        super().__init__(config, session=session)
        cfg = self.config
        missing = (
            [n for n in ("username", "password") if not cfg.get(n)]
            if cfg["auth"] == "basic"
            else [n for n in ("token_url", "client_id", "client_secret") if not cfg.get(n)]
        )
        if missing:
            raise InvalidConfig(f"sap_odata: auth '{cfg['auth']}' needs setting(s) {', '.join(missing)}")
        client = str(cfg.get("sap_client") or "")
        if client and not (client.isdigit() and len(client) == 3):
            raise InvalidConfig("sap_odata: sap_client must be three digits, e.g. 100")
        try:
            self.page_size = int(cfg["page_size"])
        except (TypeError, ValueError):
            raise InvalidConfig("sap_odata: page_size must be a whole number") from None
        if not 1 <= self.page_size <= 5000:
            raise InvalidConfig("sap_odata: page_size must be between 1 and 5000")
        root = "/" + str(cfg["service_root"] or "").strip("/")
        self.root = str(cfg["host_url"]).rstrip("/") + root
        self.params = {"sap-client": client} if client else {}
        if cfg["auth"] == "basic":
            self.session.auth = (str(cfg["username"]), str(cfg["password"]))
        self._token: str | None = None
        self._token_expires = 0.0
        self._csrf: dict[str, str] = {}  # service -> token
        self._services: dict[str, Any] = {}  # service -> pyodata Service
        self._what = ""
        #: $inlinecount of the last read's first query: the rows changed since the cursor.
        self.last_total: int | None = None

    # --- auth --------------------------------------------------------------------------------------

    def _login(self) -> None:
        """OAuth 2.0 client credentials (client id/secret as Basic, as XSUAA expects)."""
        cfg = self.config
        response = self.session.post(
            str(cfg["token_url"]),
            data={"grant_type": "client_credentials"},
            auth=(str(cfg["client_id"]), str(cfg["client_secret"])),
            headers={"Accept": "application/json"},
        )
        limited = generic_limit(response)
        if limited is not None:
            limited.message = f"{self.label}: the token endpoint: {limited.message}"
            raise limited
        if response.status_code >= 500:
            raise VendorUnavailable(
                f"{self.label}: the token endpoint answered HTTP {response.status_code}",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise AuthFailed(
                f"{self.label}: the token endpoint refused the client credentials "
                f"(HTTP {response.status_code})",
                status=response.status_code,
            )
        body = self._json(response, "the OAuth token request")
        with self.expecting("the OAuth token request"):
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in", 3600))
        self.session.add_secret(token)
        self._token = token
        self._token_expires = time.monotonic() + max(0.0, expires_in - TOKEN_MARGIN_S)
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _ensure_token(self) -> None:
        if self.config["auth"] == "oauth" and (
            self._token is None or time.monotonic() >= self._token_expires
        ):
            self._login()

    def _authorized(self, call: Callable[[], Any]) -> Any:
        """Run `call`; on 401 log in again once (OAuth) — a second 401 is AuthExpired; Basic: AuthFailed."""
        self._ensure_token()
        try:
            return call()
        except _Unauthorized:
            if self.config["auth"] != "oauth":
                raise AuthFailed(
                    f"{self.label}: the system rejected the user or password (HTTP 401)", status=401
                ) from None
        self._login()
        try:
            return call()
        except _Unauthorized:
            raise AuthExpired(
                f"{self.label}: a fresh OAuth token was rejected too (HTTP 401)", status=401
            ) from None

    # --- HTTP and errors ---------------------------------------------------------------------------

    def _check(self, response: Any, what: str, *, modifying: bool = False) -> None:
        """Raise the typed error an answer means (also for pyodata's answers, through the response hook)."""
        status = response.status_code
        if status < 400:
            return
        if status == 401:
            raise _Unauthorized
        limited = generic_limit(response) if isinstance(response, requests.Response) else None
        if limited is not None:
            limited.message = f"{self.label}: {limited.message}"
            raise limited
        code, message, details = self._error(response)
        if (
            modifying
            and status == 403
            and (str(response.headers.get("x-csrf-token", "")).lower() == "required" or "CSRF" in message)
        ):
            raise _CsrfRequired
        text = self.session.redact(f"{self.label}: {what} failed: {message}" + (f" [{code}]" if code else ""))
        if status == 403:
            raise AuthFailed(text, status=status, code=code or None)
        if status >= 500:
            raise VendorUnavailable(text, status=status, code=code or None)
        raise SapODataError(text, status=status, code=code, details=details)

    @staticmethod
    def _error(response: Any) -> tuple[str, str, list[str]]:
        """(code, message, errordetails messages) of SAP's error JSON; the HTTP status if it is not one."""
        try:
            error = json.loads(response.content)["error"]
            code = str(error.get("code") or "")
            message = str(error["message"]["value"])
            rows = (error.get("innererror") or {}).get("errordetails") or []
            details = [str(d.get("message")) for d in rows if isinstance(d, dict) and d.get("message")]
        except (ValueError, KeyError, TypeError, AttributeError):
            return "", f"HTTP {response.status_code}", []
        return code, message, [d for d in details if d != message]

    def _json(self, response: Any, what: str) -> Any:
        try:
            return json.loads(response.content)
        except ValueError:
            raise VendorUnavailable(
                f"{self.label} answered {what} with malformed JSON (HTTP {response.status_code}): "
                "the answer was cut off or is not JSON",
                status=response.status_code,
            ) from None

    def _get(self, url: str, what: str, **kwargs: Any) -> requests.Response:
        def call() -> requests.Response:
            response = self.session.get(url, params=self.params, **kwargs)
            self._check(response, what)
            return response

        result: requests.Response = self._authorized(call)
        return result

    # --- services (pyodata) -----------------------------------------------------------------------

    def _service(self, name: str) -> Any:
        """The pyodata client of one service, built from the system's `$metadata` (once per connector)."""
        if name in self._services:
            return self._services[name]
        what = f"{name}/$metadata"
        response = self._get(f"{self.root}/{name}/$metadata", what, headers={"Accept": "application/xml"})
        try:
            etree.fromstring(response.content, etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError:
            raise VendorUnavailable(
                f"{self.label} answered {what} with malformed XML: the answer was cut off or is not XML"
            ) from None
        try:
            service = pyodata.Client(
                f"{self.root}/{name}/",
                self.session,
                metadata=response.content,
                config=Config(retain_null=True),
            )
            entity_types = {t.name: {p.name for p in t.proprties()} for t in service.schema.entity_types}
        except (PyODataException, *_SHAPE) as exc:
            raise UnexpectedResponse(
                self.session.redact(f"{self.label} answered {what} with metadata pyodata cannot use: {exc}")[
                    :400
                ]
            ) from exc
        for stream, (svc, entity_set, _) in STREAMS.items():
            if svc != name:
                continue
            if entity_set not in {s.name for s in service.schema.entity_sets}:
                raise UnexpectedResponse(f"{self.label}: {what} has no entity set {entity_set}")
            known = set().union(*(entity_types.get(t, set()) for t in FIELD_TYPES[stream]))
            unknown = sorted(set(self.field_map.get(stream, {}).values()) - known)
            if unknown:
                raise InvalidConfig(f"sap_odata: {stream} has no property {', '.join(unknown)} in {name}")
        self._services[name] = service
        return service

    def _query(
        self, stream: str, build: Callable[[Any], Any] | None = None, *, next_url: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None, int | None]:
        """One page of `stream`'s entity set: (JSON rows, __next, __count); `next_url` (a `__next`) must
        stay on the system's origin."""
        name, entity_set, _ = STREAMS[stream]
        service = self._service(name)
        self._what = entity_set
        if next_url is not None:
            if url_origin(next_url) != url_origin(self.root):
                raise UnexpectedResponse(
                    f"{self.label} answered {entity_set} with a __next on another origin"
                )
            url, params, headers = next_url, None, {"Accept": "application/json"}
        else:
            assert build is not None
            request = build(getattr(service.entity_sets, entity_set).get_entities())
            url = f"{service.url}{request.get_path()}"
            params = {**request.get_query_params(), "$format": "json", **self.params}
            headers = request.get_headers()

        def call() -> requests.Response:
            response = self.session.get(url, params=params, headers=headers)
            self._check(response, entity_set)
            return response

        body = self._json(self._authorized(call), entity_set)
        d = body.get("d") if isinstance(body, dict) else None
        rows = d.get("results") if isinstance(d, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            found = "no" if rows is None else f"a {type(rows).__name__} as"
            raise UnexpectedResponse(
                f"{self.label} answered {entity_set} with {found} 'd.results' instead of rows"
            )
        assert isinstance(d, dict)
        with self.expecting(entity_set):
            total = int(d["__count"]) if "__count" in d else None
            following = str(d["__next"]) if d.get("__next") else None
        return rows, following, total

    # --- interface ---------------------------------------------------------------------------------

    def check_connection(self) -> None:
        for name in (BP, SO):
            self._service(name)
        self._query("contacts", lambda q: q.top(1))

    def streams(self) -> list[Stream]:
        return [Stream(name, f"{svc}/{es}", writable=w) for name, (svc, es, w) in STREAMS.items()]

    def _filter(self, stream: str, since: datetime | None, after: tuple[datetime, str] | None) -> str:
        """Changed at or after `since`, or strictly after `(time, key)` of the last row of a page."""
        parts = ["BusinessPartnerCategory eq '1'"] if stream == "contacts" else []
        moment = after[0] if after else since
        if moment is not None:
            if stream == "contacts":
                day = datetime_literal(moment.replace(hour=0, minute=0, second=0))
                secs = time_literal(moment.hour * 3600 + moment.minute * 60 + moment.second)
                if after:
                    key = quote(after[1])
                    tie = f"LastChangeTime eq {secs} and BusinessPartner gt {key}"
                    same = f"(LastChangeTime gt {secs} or ({tie}))"
                else:
                    same = f"LastChangeTime ge {secs}"
                parts.append(f"(LastChangeDate gt {day} or (LastChangeDate eq {day} and {same}))")
            else:
                stamp = datetimeoffset_literal(moment)
                if after:
                    parts.append(
                        f"(LastChangeDateTime gt {stamp} or (LastChangeDateTime eq {stamp} "
                        f"and SalesOrder gt {quote(after[1])}))"
                    )
                else:
                    parts.append(f"LastChangeDateTime ge {stamp}")
        return " and ".join(parts)

    def read(self, stream: str, *, cursor: Cursor | None = None) -> Iterator[Record]:
        self.stream(stream)
        cursor = cursor or Cursor()
        after: tuple[datetime, str] | None = None
        first = True
        while True:
            flt = self._filter(stream, cursor.value, after)

            def build(q: Any, flt: str = flt, first: bool = first) -> Any:
                q = q.order_by(ORDER_BY[stream]).top(self.page_size).expand(EXPAND[stream])
                q = q.filter(flt) if flt else q
                return q.count(inline=True) if first else q

            rows, next_url, total = self._query(stream, build)
            if first:
                self.last_total = total
            first = False
            seen = len(rows)
            last: Record | None = None
            exact = None  # the last row's change time at full precision (LastChangeDateTime has 7 digits)
            while True:
                with self.expecting(STREAMS[stream][1]):
                    records = [self._record(stream, raw) for raw in rows]
                    exact = _changed_at(stream, rows[-1]) if rows else exact
                for record in records:
                    if not cursor.covers(record):
                        yield record
                last = records[-1] if records else last
                if not next_url:
                    break
                # Server-driven paging: the system capped the page below $top; __next continues the query.
                rows, next_url, _ = self._query(stream, next_url=next_url)
                seen += len(rows)
            if seen < self.page_size or last is None or exact is None:
                return
            after = (exact, last.external_id)

    def _record(self, stream: str, raw: dict[str, Any]) -> Record:
        flat = {k: v for k, v in raw.items() if not isinstance(v, dict | list)}
        if stream == "contacts":
            key = str(raw["BusinessPartner"])
            addresses = _results(raw.get("to_BusinessPartnerAddress"))
            if addresses:
                address = addresses[0]
                emails = _results(address.get("to_EmailAddress"))
                default = next(
                    (e for e in emails if e.get("IsDefaultEmailAddress")), emails[0] if emails else {}
                )
                flat = {
                    **{k: v for k, v in address.items() if not isinstance(v, dict | list)},
                    **{k: v for k, v in default.items() if not isinstance(v, dict | list)},
                    **flat,
                }
        else:
            key = str(raw["SalesOrder"])
        updated = _changed_at(stream, raw)
        fields = self.to_canonical(stream, flat)
        if stream == "orders" and self.field_map["orders"].get("status") == "OverallSDProcessStatus":
            code = str(raw.get("OverallSDProcessStatus") or "")
            fields["status"] = (
                "Rejected"
                if raw.get("OverallSDDocumentRejectionSts") == "C"
                else ORDER_STATUS.get(code, code)
            )
        return Record(key, utc(updated), fields, _clean(raw))

    # --- writes ------------------------------------------------------------------------------------

    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Upsert persons by BusinessPartnerIDByExtSystem: look the numbers up, then one `$batch` with a
        change set per record (deep insert with address and e-mail, or PATCHes of what changed)."""
        self.stream(stream, for_write=True)
        service_types = self._service(BP).schema
        bp_props = {p.name for p in service_types.entity_type("A_BusinessPartnerType").proprties()}
        address_props = {
            p.name for p in service_types.entity_type("A_BusinessPartnerAddressType").proprties()
        }
        result = WriteResult()
        for start in range(0, len(records), WRITE_BATCH):
            chunk = records[start : start + WRITE_BATCH]
            outcomes: list[WriteOutcome | None] = [None] * len(chunk)
            plans: list[tuple[int, str, list[tuple[str, str, dict[str, Any]]]]] = []
            exts = [str(r["external_id"]) for r in chunk]
            existing = self._lookup([e for e in exts if 0 < len(e) <= EXT_ID_MAX])
            for i, (record, ext) in enumerate(zip(chunk, exts, strict=True)):
                if not 0 < len(ext) <= EXT_ID_MAX:
                    outcomes[i] = WriteOutcome(ext, error=f"external id must be 1 to {EXT_ID_MAX} characters")
                    continue
                vendor = {
                    k: v
                    for k, v in self.to_vendor(stream, record["fields"]).items()
                    if k != "BusinessPartnerIDByExtSystem"
                }
                bp = {k: _text(v) for k, v in vendor.items() if k in bp_props}
                address = {k: _text(v) for k, v in vendor.items() if k in address_props and k not in bp}
                email = _text(vendor["EmailAddress"]) if "EmailAddress" in vendor else None
                found = existing.get(ext)
                if found is None:
                    body: dict[str, Any] = {
                        "BusinessPartnerCategory": "1",
                        "BusinessPartnerIDByExtSystem": ext,
                        **bp,
                    }
                    if address or email:
                        addr: dict[str, Any] = dict(address)
                        if email:
                            addr["to_EmailAddress"] = {
                                "results": [{"EmailAddress": email, "IsDefaultEmailAddress": True}]
                            }
                        body["to_BusinessPartnerAddress"] = {"results": [addr]}
                    plans.append((i, ext, [("POST", "A_BusinessPartner", body)]))
                    continue
                key = str(found["BusinessPartner"])
                ops: list[tuple[str, str, dict[str, Any]]] = []
                if bp:
                    ops.append(("PATCH", f"A_BusinessPartner({quote(key)})", bp))
                addresses = _results(found.get("to_BusinessPartnerAddress"))
                if addresses and address:
                    aid = str(addresses[0]["AddressID"])
                    ops.append(
                        (
                            "PATCH",
                            f"A_BusinessPartnerAddress(BusinessPartner={quote(key)},AddressID={quote(aid)})",
                            address,
                        )
                    )
                emails = _results(addresses[0].get("to_EmailAddress")) if addresses else []
                if email is not None and emails and emails[0].get("EmailAddress") != email:
                    e = emails[0]
                    path = (
                        f"A_AddressEmailAddress(AddressID={quote(str(e['AddressID']))},"
                        f"Person={quote(str(e['Person']))},OrdinalNumber={quote(str(e['OrdinalNumber']))})"
                    )
                    ops.append(("PATCH", path, {"EmailAddress": email}))
                if ops:
                    plans.append((i, ext, ops))
                outcomes[i] = WriteOutcome(ext, key, created=False)  # an error in its change set replaces it
            answers = self._batch([ops for _, _, ops in plans]) if plans else []
            for (i, ext, ops), answer in zip(plans, answers, strict=True):
                if isinstance(answer, str):
                    outcomes[i] = WriteOutcome(ext, error=answer)
                elif ops[0][0] == "POST":
                    with self.expecting("the A_BusinessPartner create in $batch"):
                        created = answer[0][1]["d"]["BusinessPartner"]
                    outcomes[i] = WriteOutcome(ext, str(created), created=True)
            result.outcomes.extend(o for o in outcomes if o is not None)
        return result

    def _lookup(self, exts: list[str]) -> dict[str, dict[str, Any]]:
        """Business partners by BusinessPartnerIDByExtSystem, with address and e-mail (to patch them)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(exts), LOOKUP_BATCH):
            part = exts[start : start + LOOKUP_BATCH]
            flt = " or ".join(f"BusinessPartnerIDByExtSystem eq {quote(e)}" for e in part)
            top = 2 * len(part)
            rows, _, _ = self._query("contacts", partial(_lookup_query, flt, top))
            with self.expecting("the A_BusinessPartner lookup by BusinessPartnerIDByExtSystem"):
                for row in rows:
                    found.setdefault(str(row["BusinessPartnerIDByExtSystem"]), row)
        return found

    def _csrf_token(self, service: str, *, refresh: bool = False) -> str:
        if refresh or service not in self._csrf:
            response = self._get(
                f"{self.root}/{service}/",
                f"the CSRF token fetch of {service}",
                headers={"X-CSRF-Token": "Fetch", "Accept": "application/json"},
            )
            token = response.headers.get("x-csrf-token", "")
            if not token or token.lower() == "required":
                raise UnexpectedResponse(
                    f"{self.label}: {service} answered the CSRF token fetch without a token"
                )
            self.session.add_secret(token)
            self._csrf[service] = token
        return self._csrf[service]

    def _modify(
        self, service: str, path: str, body: bytes, headers: dict[str, str], what: str
    ) -> requests.Response:
        """A modifying request with the CSRF token; on "CSRF token validation failed" fetch it once more."""
        for attempt in (0, 1):
            token = self._csrf_token(service, refresh=attempt == 1)

            def call(token: str = token) -> requests.Response:
                response = self.session.post(
                    f"{self.root}/{service}/{path}",
                    params=self.params,
                    data=body,
                    headers={**headers, "X-CSRF-Token": token},
                )
                self._check(response, what, modifying=True)
                return response

            try:
                result: requests.Response = self._authorized(call)
                return result
            except _CsrfRequired:
                continue
        raise AuthExpired(
            f"{self.label}: {what} failed: CSRF token validation failed after a fresh token", status=403
        )

    def _batch(
        self, changesets: list[list[tuple[str, str, dict[str, Any]]]]
    ) -> list[list[tuple[int, Any]] | str]:
        """POST one `$batch` of change sets; per change set its answers, or the error text SAP gave it."""
        boundary = f"batch_{uuid.uuid4()}"
        parts = []
        for ops in changesets:
            cs = f"changeset_{uuid.uuid4()}"
            inner = "".join(
                f"--{cs}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                f"{method} {path} HTTP/1.1\r\n"
                "Content-Type: application/json\r\nAccept: application/json\r\n\r\n"
                f"{json.dumps(body)}\r\n"
                for method, path, body in ops
            )
            parts.append(
                f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n{inner}--{cs}--\r\n"
            )
        payload = ("".join(parts) + f"--{boundary}--\r\n").encode()
        what = f"{BP}/$batch"
        response = self._modify(
            BP,
            "$batch",
            payload,
            {"Content-Type": f"multipart/mixed; boundary={boundary}", "Accept": "multipart/mixed"},
            what,
        )
        if response.status_code != 202:
            raise UnexpectedResponse(
                f"{self.label} answered {what} with HTTP {response.status_code}, not 202"
            )
        answers = _multipart(
            response.content.decode("utf-8", "replace"), response.headers.get("Content-Type", "")
        )
        if answers is None or len(answers) != len(changesets):
            count = "no" if answers is None else str(len(answers))
            raise UnexpectedResponse(
                f"{self.label} answered {what} with {count} parts for {len(changesets)} change sets"
            )
        results: list[list[tuple[int, Any]] | str] = []
        for answer, ops in zip(answers, changesets, strict=True):
            if isinstance(answer, tuple):  # one answer for the whole change set: SAP rolled it back
                status, body = answer
                if status >= 500:
                    raise VendorUnavailable(f"{self.label}: {what} failed with HTTP {status} in a change set")
                if status < 300:
                    raise UnexpectedResponse(
                        f"{self.label} answered a change set of {what} without its parts"
                    )
                code, message, details = self._error(_Fake(status, body))
                results.append(
                    self.session.redact(f"SAP {code}: {message}" + "".join(f"; {d}" for d in details))
                )
                continue
            if len(answer) != len(ops):
                raise UnexpectedResponse(
                    f"{self.label} answered a change set of {what} with {len(answer)} parts "
                    f"for {len(ops)} operations"
                )
            decoded: list[tuple[int, Any]] = []
            for status, body in answer:
                try:
                    decoded.append((status, json.loads(body) if body.strip() else None))
                except ValueError:
                    raise VendorUnavailable(
                        f"{self.label} answered {what} with malformed JSON in a change set"
                    ) from None
            results.append(decoded)
        return results


# --- helpers ---------------------------------------------------------------------------------------

_SHAPE = (KeyError, IndexError, TypeError, AttributeError, ValueError)


def _changed_at(stream: str, raw: Mapping[str, Any]) -> datetime:
    """A row's change time: LastChangeDate + LastChangeTime (seconds), or LastChangeDateTime (to the ms)."""
    if stream == "contacts":
        return parse_date_json(raw["LastChangeDate"]) + timedelta(
            seconds=parse_duration(raw["LastChangeTime"])
        )
    return parse_date_json(raw["LastChangeDateTime"])


def _lookup_query(flt: str, top: int, query: Any) -> Any:
    return query.filter(flt).top(top).expand(EXPAND["contacts"])


class _Fake:
    """Just enough of a response for `_error` (a part of a $batch answer)."""

    def __init__(self, status: int, body: str) -> None:
        self.status_code, self.content = status, body.encode()


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _results(value: Any) -> list[dict[str, Any]]:
    """The rows of an expanded to-many navigation (`{"results": [...]}`); [] when deferred or absent."""
    if isinstance(value, dict):
        value = value.get("results")
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _clean(value: Any) -> Any:
    """The entity without OData bookkeeping (`__metadata`, deferred navigations): the record's raw."""
    if isinstance(value, dict):
        if "__deferred" in value:
            return None
        return {
            k: _clean(v)
            for k, v in value.items()
            if k != "__metadata" and not (isinstance(v, dict) and "__deferred" in v)
        }
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _http(part: str) -> tuple[int, str]:
    """(status, body) of an application/http part of a $batch answer."""
    text = part.replace("\r\n", "\n")
    _, _, http = text.partition("\n\n")  # the part's own headers
    status_line, _, rest = http.partition("\n")
    _, _, body = rest.partition("\n\n")
    return int(status_line.split()[1]), body.strip()


def _parts(body: str, boundary: str) -> list[str]:
    chunks = body.split(f"--{boundary}")
    return [c.strip("\r\n") for c in chunks[1:] if not c.startswith("--")]


def _multipart(body: str, content_type: str) -> list[list[tuple[int, str]] | tuple[int, str]] | None:
    """A $batch answer: per part, its change set's answers (a list) or one answer (a tuple); None if none."""
    if "boundary=" not in content_type:
        return None
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
    answers: list[list[tuple[int, str]] | tuple[int, str]] = []
    try:
        for part in _parts(body, boundary):
            head = part.replace("\r\n", "\n").partition("\n\n")[0].lower()
            if "multipart/mixed" in head:
                inner = head.split("boundary=")[1].split(";")[0].split("\n")[0].strip('"')
                content = part.replace("\r\n", "\n").partition("\n\n")[2]
                # boundaries are case-sensitive: take the inner one from the original text
                start = part.lower().index(inner)
                inner = part[start : start + len(inner)]
                answers.append([_http(p) for p in _parts(content, inner)])
            else:
                answers.append(_http(part))
    except (ValueError, IndexError):
        return None
    return answers
