"""SAP S/4HANA OData V2 simulator: API_BUSINESS_PARTNER and API_SALES_ORDER_SRV as SAP Gateway serves them.

Publishes the shipped `$metadata` (metadata/*.xml, SAP's shape) so pyodata builds its client from it
unchanged, and implements what a client of these services uses: `$filter` (eq ne gt ge lt le, and/or/not,
substringof/startswith/endswith/tolower/toupper, parentheses; string, datetime, datetimeoffset, time
literals), `$orderby`, `$top`/`$skip`,
`$inlinecount=allpages`, server-driven paging (`__next` with `$skiptoken` when a page is capped at
`max_page_size`), `$expand` of to_BusinessPartnerAddress/to_EmailAddress and to_Item, `$batch` with change
sets (each atomic, its own answer), the CSRF token protocol (`X-CSRF-Token: Fetch`, bound to the session
cookie, 403 "CSRF token validation failed" otherwise), `sap-client`, Basic auth and an XSUAA-style OAuth
client-credentials token endpoint, and SAP's error JSON (`error.code`, `error.message.value`,
`innererror.errordetails`). Answers are JSON only (`$format=json` / `Accept: application/json`); Atom is
not simulated.
"""

from __future__ import annotations

import base64
import calendar
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, unquote_plus, urlencode

from connectors.sap_odata.odata import date_json, duration, parse_duration
from connectors.simulation import (
    Row,
    SimRequest,
    SimResponse,
    Simulator,
    Table,
    json_response,
    reshape_json,
    seed_ts,
)

ROOT = "/sap/opu/odata/sap"
BP, SO = "API_BUSINESS_PARTNER", "API_SALES_ORDER_SRV"
METADATA = Path(__file__).parent / "metadata"
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a secret
COOKIE = "SAP_SESSIONID_S4H_100"
#: Properties a client may set, per entity set (the rest are read-only: sap:creatable/updatable="false").
BP_WRITABLE = frozenset(
    {
        "BusinessPartnerCategory",
        "BusinessPartnerGrouping",
        "BusinessPartnerIDByExtSystem",
        "CorrespondenceLanguage",
        "FirstName",
        "LastName",
        "Language",
        "OrganizationBPName1",
        "IsNaturalPerson",
    }
)
ADDRESS_WRITABLE = frozenset({"CityName", "Country", "HouseNumber", "Language", "PostalCode", "StreetName"})
#: GBSTK (OverallSDProcessStatus): A not yet processed, B partially processed, C completely processed.
SD_STATUS = {"Draft": "A", "Activated": "B", "Shipped": "B", "Delivered": "C", "Cancelled": "C"}
DELIVERY = {"Draft": "A", "Activated": "A", "Shipped": "B", "Delivered": "C", "Cancelled": ""}
#: $orderby that is the tables' own (change second, key) order, so it needs no sort.
CHANGE_ORDER = {
    "A_BusinessPartner": ["LastChangeDate", "LastChangeTime", "BusinessPartner"],
    "A_SalesOrder": ["LastChangeDateTime", "SalesOrder"],
}
LANG = {"en": "EN", "de": "DE", "fr": "FR", "es": "ES", "ja": "JA"}
_TOKEN = re.compile(
    r"\s*(?:(?P<lit>(?:datetimeoffset|datetime|time|guid)?'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?[mMdDlL]?)"
    r"|(?P<op>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_/]*))"
)


class ODataError(Exception):
    """An error answer in SAP's JSON shape."""

    def __init__(self, status: int, code: str, message: str, target: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.target = status, code, message, target


def error_body(code: str, message: str, *, service: str = BP, target: str = "") -> dict[str, Any]:
    """SAP Gateway's error JSON, errordetails included (the first detail repeats the message)."""
    transaction = uuid.uuid4().hex.upper()
    return {
        "error": {
            "code": code,
            "message": {"lang": "en", "value": message},
            "innererror": {
                "application": {
                    "component_id": "LO-MD-BP" if service == BP else "SD-SLS",
                    "service_namespace": "/SAP/",
                    "service_id": service,
                    "service_version": "0001",
                },
                "transactionid": transaction,
                "timestamp": time.strftime("%Y%m%d%H%M%S.0000000", time.gmtime()),
                "Error_Resolution": {
                    "SAP_Transaction": "For backend administrators: use ADT feed reader "
                    '"SAP Gateway Error Log" '
                    "or run transaction /IWFND/ERROR_LOG on SAP Gateway hub system and search "
                    "for entries with the timestamp above for more details",
                    "SAP_Note": "See SAP Note 1797736 for error analysis "
                    "(https://service.sap.com/sap/support/notes/1797736)",
                },
                "errordetails": [
                    {
                        "code": code,
                        "message": message,
                        "propertyref": target,
                        "severity": "error",
                        "target": target,
                        "transition": False,
                    }
                ],
            },
        }
    }


# --- $filter -------------------------------------------------------------------------------------------


Value = Callable[[Row], Any]


def _literal(text: str) -> Any:
    """Python value of an OData literal, comparable with what `SapODataSimulator.value` returns."""
    if text.startswith("datetimeoffset'") or text.startswith("datetime'"):
        raw = text.split("'", 1)[1][:-1].rstrip("Z")
        if len(raw) == 16:
            raw += ":00"
        seconds = calendar.timegm(time.strptime(raw[:19], "%Y-%m-%dT%H:%M:%S"))
        return seconds + float("0" + raw[19:]) if raw[19:].startswith(".") else seconds
    if text.startswith("time'"):
        return parse_duration(text[5:-1])
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    number = text.rstrip("mMdDlL")
    return float(number) if "." in number else int(number)


class FilterParser:
    """A recursive-descent parser for the $filter subset SAP clients send; compiles to a row predicate."""

    COMPARE: dict[str, Callable[[Any, Any], bool]] = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "gt": lambda a, b: a is not None and b is not None and a > b,
        "ge": lambda a, b: a is not None and b is not None and a >= b,
        "lt": lambda a, b: a is not None and b is not None and a < b,
        "le": lambda a, b: a is not None and b is not None and a <= b,
    }

    #: Boolean string functions of OData V2 (argument order as the spec has it: substringof(needle, hay)).
    PREDICATES: ClassVar[dict[str, Callable[[str, str], bool]]] = {
        "substringof": lambda needle, hay: needle in hay,
        "startswith": lambda text, prefix: text.startswith(prefix),
        "endswith": lambda text, suffix: text.endswith(suffix),
    }
    TRANSFORMS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "tolower": lambda v: v.lower() if isinstance(v, str) else v,
        "toupper": lambda v: v.upper() if isinstance(v, str) else v,
    }

    def __init__(self, text: str, value: Callable[[Row, str], Any]) -> None:
        self.tokens = self._tokenize(text)
        self.pos = 0
        self.value = value

    @staticmethod
    def _tokenize(text: str) -> list[str]:
        tokens, pos = [], 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise ValueError(f"Invalid token at position {pos}")
            tokens.append(match.group().strip())
            pos = match.end()
        return [t for t in tokens if t]

    def parse(self) -> Callable[[Row], bool]:
        predicate = self._or()
        if self.pos != len(self.tokens):
            raise ValueError(f"Unexpected '{self.tokens[self.pos]}'")
        return predicate

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise ValueError("Unexpected end of expression")
        self.pos += 1
        return token

    def _or(self) -> Callable[[Row], bool]:
        parts = [self._and()]
        while self._peek() == "or":
            self.pos += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def _and(self) -> Callable[[Row], bool]:
        parts = [self._unary()]
        while self._peek() == "and":
            self.pos += 1
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def _unary(self) -> Callable[[Row], bool]:
        if self._peek() == "not":
            self.pos += 1
            inner = self._unary()
            return lambda row: not inner(row)
        if self._peek() == "(":
            self.pos += 1
            inner = self._or()
            if self._take() != ")":
                raise ValueError("Missing ')'")
            return inner
        if self._peek() in self.PREDICATES:
            return self._predicate_call()
        left = self._operand()
        op = self._take()
        if op not in self.COMPARE:
            raise ValueError(f"Operator '{op}' is not supported")
        right = self._operand()
        compare = self.COMPARE[op]
        return lambda row: compare(left(row), right(row))

    def _operand(self) -> Value:
        token = self._take()
        if token[0] in "'-0123456789" or "'" in token or token in ("true", "false", "null"):
            constant = _literal(token)
            return lambda row: constant
        if token in self.TRANSFORMS:
            inner = self._call_args(1)[0]
            transform = self.TRANSFORMS[token]
            return lambda row: transform(inner(row))
        if token in self.PREDICATES:
            raise ValueError(f"Function '{token}' returns a boolean: use it as a condition")
        name, value = token, self.value
        return lambda row: value(row, name)

    def _call_args(self, count: int) -> list[Value]:
        """`( operand [, operand] )` after a function name."""
        if self._take() != "(":
            raise ValueError("Expected '(' after a function name")
        args = [self._operand()]
        while len(args) < count:
            if self._take() != ",":
                raise ValueError("Expected ',' between function arguments")
            args.append(self._operand())
        if self._take() != ")":
            raise ValueError("Missing ')'")
        return args

    def _predicate_call(self) -> Callable[[Row], bool]:
        """substringof('x', F) / startswith(F, 'x') / endswith(F, 'x'), optionally compared with true/false
        (`substringof('x', F) eq true`, the form SAP's own UI5 clients send)."""
        test = self.PREDICATES[self._take()]
        first, second = self._call_args(2)

        def holds(row: Row) -> bool:
            a, b = first(row), second(row)
            return isinstance(a, str) and isinstance(b, str) and test(a, b)

        if self._peek() in ("eq", "ne"):
            negate = self._take() == "ne"
            literal = self._take()
            if literal not in ("true", "false"):
                raise ValueError("A function's result compares with true or false only")
            expected = literal == "true"
            return lambda row: (holds(row) == expected) != negate
        return holds


# --- the simulator ---------------------------------------------------------------------------------


class SapODataSimulator(Simulator):
    vendor = "sap_odata"
    username = "HUB_ODATA"
    password = "S4-demo-Passw0rd"  # noqa: S105 - demo system credential
    client_id = "sb-hub-integration!b4711"
    client_secret = "btp-demo-client-secret"  # noqa: S105 - demo system credential
    sap_client = "100"
    #: Server-driven paging: a page never holds more rows; the rest is behind `__next`.
    max_page_size = 1000
    payload_keys = ("d",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.csrf: dict[str, str] = {}  # session cookie -> token
        self.csrf_fetches = 0
        self.batches = 0
        self._next = 3_000_000
        self._seed()
        self.route("POST", TOKEN_PATH, self.token)
        for service in (BP, SO):
            base = f"{ROOT}/{service}"
            self.route("GET", base + r"/?", self.service_document)
            self.route("GET", base + r"/\$metadata", self.metadata)
            self.route("POST", base + r"/\$batch", self.batch)
        self.route("GET", f"{ROOT}/{BP}/(?P<set>A_BusinessPartner)(?:\\('(?P<key>[^']*)'\\))?", self.get)
        self.route("GET", f"{ROOT}/{SO}/(?P<set>A_SalesOrder)(?:\\('(?P<key>[^']*)'\\))?", self.get)
        self.route("POST", f"{ROOT}/{BP}/A_BusinessPartner", self.direct)
        for method in ("PATCH", "PUT"):
            self.route(
                method,
                f"{ROOT}/{BP}/(?P<rest>A_BusinessPartner\\(.*\\)|A_BusinessPartnerAddress\\(.*\\)|A_AddressEmailAddress\\(.*\\))",
                self.direct,
            )

    # --- data ------------------------------------------------------------------------------------------

    def _seed(self) -> None:
        self.tables = {
            "contacts": Table("BUT000", unique=("BusinessPartnerIDByExtSystem",)),
            "orders": Table("VBAK"),
        }
        n = self.counts
        for i in range(n["contacts"]):
            p = self.seed.person(i)
            lang = LANG[p["locale"]]
            self.tables["contacts"].insert(
                Row(
                    str(1_000_000 + i),
                    seed_ts(i),
                    {
                        "BusinessPartnerCategory": "1",
                        "FirstName": p["first_name"],
                        "LastName": p["last_name"],
                        "CorrespondenceLanguage": lang,
                        "Language": lang,
                        "BusinessPartnerIDByExtSystem": "",
                        "AddressID": str(20_000 + i),
                        "Country": p["country"],
                        "CityName": "",
                        "EmailAddress": p["email"],
                        "CreatedTs": seed_ts(i),
                    },
                )
            )
        contacts = max(1, n["contacts"])
        for i in range(n["orders"]):
            o = self.seed.order(i)
            items = [
                {
                    "SalesOrderItem": str(10 * (k + 1)),
                    "Material": f"TG{11 + k}",
                    "SalesOrderItemText": f"Trading good {11 + k}",
                    "RequestedQuantity": f"{k + 1}.000",
                    "RequestedQuantityUnit": "PC",
                    "NetAmount": f"{o['amount'] / (1 + i % 2):.3f}",
                    "SDProcessStatus": SD_STATUS[o["status"]],
                }
                for k in range(1 + i % 2)
            ]
            self.tables["orders"].insert(
                Row(
                    str(i + 1),
                    seed_ts(i),
                    {
                        "SalesOrderType": "OR",
                        "SalesOrganization": "1010",
                        "DistributionChannel": "10",
                        "OrganizationDivision": "00",
                        "SoldToParty": str(1_000_000 + o["company_index"] % contacts),
                        "PurchaseOrderByCustomer": f"PO-{o['number']}",
                        "TotalNetAmount": f"{o['amount']:.3f}",
                        "TransactionCurrency": o["currency"],
                        "OverallSDProcessStatus": SD_STATUS[o["status"]],
                        "OverallTotalDeliveryStatus": DELIVERY[o["status"]],
                        "OverallSDDocumentRejectionSts": "C" if o["status"] == "Cancelled" else "A",
                        "CreatedTs": seed_ts(i),
                        "Items": items,
                    },
                )
            )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "host_url": self.base_url,
            "token_url": self.base_url + TOKEN_PATH,
            "username": self.username,
            "password": self.password,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "sap_client": self.sap_client,
        }

    def expire_csrf(self) -> None:
        """Invalidate every CSRF token (a Gateway restart, or the session timing out)."""
        self.csrf.clear()

    @staticmethod
    def value(row: Row, name: str) -> Any:
        """A property's value for $filter/$orderby: dates and times in epoch/day seconds, as literals."""
        if name == "LastChangeDate":
            return row.ts - row.ts % 86400
        if name == "LastChangeTime":
            return row.ts % 86400
        if name == "LastChangeDateTime":
            return row.ts
        if name == "CreationDate":
            return row.data["CreatedTs"] - row.data["CreatedTs"] % 86400
        if name in ("BusinessPartner", "SalesOrder"):
            return row.id
        return row.data.get(name)

    # --- rendering -------------------------------------------------------------------------------------

    def _uri(self, service: str, path: str) -> str:
        return f"{self.base_url}{ROOT}/{service}/{path}"

    def _meta(self, service: str, path: str, typ: str) -> dict[str, str]:
        uri = self._uri(service, path)
        return {"id": uri, "uri": uri, "type": f"{service}.{typ}"}

    def render_partner(self, row: Row, expand: frozenset[str]) -> dict[str, Any]:
        cached = row.cache.get(expand)
        if cached is not None:
            return json.loads(cached)
        d, key = row.data, row.id
        result: dict[str, Any] = {
            "__metadata": self._meta(BP, f"A_BusinessPartner('{key}')", "A_BusinessPartnerType"),
            "BusinessPartner": key,
            "Customer": "",
            "BusinessPartnerCategory": d.get("BusinessPartnerCategory", ""),
            "BusinessPartnerFullName": " ".join(x for x in (d.get("FirstName"), d.get("LastName")) if x)
            or d.get("OrganizationBPName1", ""),
            "BusinessPartnerGrouping": d.get("BusinessPartnerGrouping", "BP02"),
            "BusinessPartnerIDByExtSystem": d.get("BusinessPartnerIDByExtSystem", ""),
            "CorrespondenceLanguage": d.get("CorrespondenceLanguage", ""),
            "CreatedByUser": "CB9980000010",
            "CreationDate": date_json(d["CreatedTs"] - d["CreatedTs"] % 86400),
            "CreationTime": duration(d["CreatedTs"] % 86400),
            "FirstName": d.get("FirstName", ""),
            "IsNaturalPerson": "X" if d.get("BusinessPartnerCategory") == "1" else "",
            "Language": d.get("Language", ""),
            "LastChangeDate": date_json(row.ts - row.ts % 86400),
            "LastChangeTime": duration(row.ts % 86400),
            "LastChangedByUser": "CB9980000010",
            "LastName": d.get("LastName", ""),
            "OrganizationBPName1": d.get("OrganizationBPName1", ""),
        }
        nav = f"A_BusinessPartner('{key}')/to_BusinessPartnerAddress"
        if "to_BusinessPartnerAddress" in expand:
            address_id = d["AddressID"]
            path = f"A_BusinessPartnerAddress(BusinessPartner='{key}',AddressID='{address_id}')"
            address: dict[str, Any] = {
                "__metadata": self._meta(BP, path, "A_BusinessPartnerAddressType"),
                "BusinessPartner": key,
                "AddressID": address_id,
                "ValidityStartDate": date_json(d["CreatedTs"], offset=True),
                "CityName": d.get("CityName", ""),
                "Country": d.get("Country", ""),
                "HouseNumber": "",
                "Language": d.get("Language", ""),
                "PostalCode": "",
                "StreetName": "",
            }
            if "to_BusinessPartnerAddress/to_EmailAddress" in expand:
                emails = []
                if d.get("EmailAddress"):
                    epath = (
                        f"A_AddressEmailAddress(AddressID='{address_id}',Person='{key}',OrdinalNumber='1')"
                    )
                    emails.append(
                        {
                            "__metadata": self._meta(BP, epath, "A_AddressEmailAddressType"),
                            "AddressID": address_id,
                            "Person": key,
                            "OrdinalNumber": "1",
                            "IsDefaultEmailAddress": True,
                            "EmailAddress": d["EmailAddress"],
                            "SearchEmailAddress": d["EmailAddress"][:20].upper(),
                            "AddressCommunicationRemarkText": "",
                        }
                    )
                address["to_EmailAddress"] = {"results": emails}
            else:
                address["to_EmailAddress"] = {"__deferred": {"uri": self._uri(BP, path + "/to_EmailAddress")}}
            result["to_BusinessPartnerAddress"] = {"results": [address]}
        else:
            result["to_BusinessPartnerAddress"] = {"__deferred": {"uri": self._uri(BP, nav)}}
        row.cache[expand] = json.dumps(result).encode()
        return result

    def render_order(self, row: Row, expand: frozenset[str]) -> dict[str, Any]:
        cached = row.cache.get(expand)
        if cached is not None:
            return json.loads(cached)
        d, key = row.data, row.id
        created = d["CreatedTs"]
        result: dict[str, Any] = {
            "__metadata": self._meta(SO, f"A_SalesOrder('{key}')", "A_SalesOrderType"),
            "SalesOrder": key,
            **{
                k: d[k]
                for k in (
                    "SalesOrderType",
                    "SalesOrganization",
                    "DistributionChannel",
                    "OrganizationDivision",
                    "SoldToParty",
                )
            },
            "CreationDate": date_json(created - created % 86400),
            "CreatedByUser": "CB9980000010",
            "LastChangeDate": date_json(row.ts - row.ts % 86400),
            "LastChangeDateTime": date_json(row.ts, offset=True),
            "PurchaseOrderByCustomer": d["PurchaseOrderByCustomer"],
            "TotalNetAmount": d["TotalNetAmount"],
            "TransactionCurrency": d["TransactionCurrency"],
            "RequestedDeliveryDate": date_json(created - created % 86400 + 7 * 86400),
            "OverallSDProcessStatus": d["OverallSDProcessStatus"],
            "OverallTotalDeliveryStatus": d["OverallTotalDeliveryStatus"],
            "OverallSDDocumentRejectionSts": d["OverallSDDocumentRejectionSts"],
        }
        if "to_Item" in expand:
            result["to_Item"] = {
                "results": [
                    {
                        "__metadata": self._meta(
                            SO,
                            f"A_SalesOrderItem(SalesOrder='{key}',SalesOrderItem='{item['SalesOrderItem']}')",
                            "A_SalesOrderItemType",
                        ),
                        "SalesOrder": key,
                        **item,
                        "TransactionCurrency": d["TransactionCurrency"],
                    }
                    for item in d["Items"]
                ]
            }
        else:
            result["to_Item"] = {"__deferred": {"uri": self._uri(SO, f"A_SalesOrder('{key}')/to_Item")}}
        row.cache[expand] = json.dumps(result).encode()
        return result

    # --- transport-level behaviour ---------------------------------------------------------------------

    def is_public(self, request: SimRequest) -> bool:
        return request.path == TOKEN_PATH

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        ok = False
        if scheme.lower() == "basic":
            ok = _basic(value) == (self.username, self.password)
        elif scheme.lower() == "bearer":
            ok = self.tokens.state(value) == "valid"
        if not ok:
            return SimResponse(
                401,
                b"<html><head><title>Logon Error Message</title></head><body>Logon failed</body></html>",
                "text/html; charset=utf-8",
                headers={"WWW-Authenticate": 'Basic realm="SAP NetWeaver Application Server [S4H/100]"'},
            )
        client = request.query.get("sap-client")
        if client not in (None, self.sap_client):
            return self.error_json(
                ODataError(403, "/IWFND/CM_CONSUMER/101", f"Client {client} is not available in this system")
            )
        if request.method in ("POST", "PATCH", "PUT", "DELETE", "MERGE"):
            cookie = _cookie(request.headers.get("cookie", ""), COOKIE)
            token = request.headers.get("x-csrf-token", "")
            if not cookie or not token or self.csrf.get(cookie) != token:
                denied = self.error_json(ODataError(403, "/IWFND/CM_BEC/026", "CSRF token validation failed"))
                denied.headers["x-csrf-token"] = "Required"
                return denied
        return None

    def dispatch(self, request: SimRequest) -> SimResponse:
        request.path = unquote(request.path)  # clients percent-encode keys: A_BusinessPartner(%271%27)
        response = super().dispatch(request)
        fetch = request.method == "GET" and request.headers.get("x-csrf-token", "").lower() == "fetch"
        if fetch and 200 <= response.status < 300 and not request.path.startswith("/__admin/"):
            self.csrf_fetches += 1
            cookie = _cookie(request.headers.get("cookie", ""), COOKIE) or secrets.token_urlsafe(18)
            token = self.csrf.get(cookie) or secrets.token_urlsafe(18)
            self.csrf[cookie] = token
            response.headers = {
                **response.headers,
                "x-csrf-token": token,
                "Set-Cookie": f"{COOKIE}={cookie}; path=/; HttpOnly",
            }
        return response

    def error_json(self, error: ODataError, service: str = BP) -> SimResponse:
        body = error_body(error.code, error.message, service=service, target=error.target)
        return json_response(error.status, body)

    def error(self, status: int, message: str) -> SimResponse:
        code = {500: "/IWBEP/CM_MGW_RT/004", 502: "/IWFND/CM_BEC/026", 503: "/IWFND/CM_BEC/026"}.get(
            status, "/IWFND/CM_MGW/025"
        )
        response = self.error_json(ODataError(status, code, message))
        if status == 429:  # an API Management spike arrest in front of Gateway: come back in a second
            response.headers["Retry-After"] = "1"
        return response

    def rate_limited(self, request: SimRequest) -> SimResponse:
        response = self.error_json(ODataError(429, "/IWFND/CM_MGW/110", "Too many requests"))
        response.headers["Retry-After"] = str(self.faults.rate_limit_retry_after)
        return response

    def malformed(self, request: SimRequest, response: SimResponse, kind: str) -> SimResponse:
        """JSON answers lose (`missing`) or scalarize (`wrong_type`) their `d`; `$metadata` loses its entity
        types or gets an unknown Edm type; a `$batch` answer loses its parts or gets non-JSON bodies."""
        if kind in ("truncated", "garbage"):
            return super().malformed(request, response, kind)
        body = response.body
        if "xml" in response.content_type:
            text = body.decode()
            if kind == "missing":
                text = re.sub(r"<EntityType .*?</EntityType>", "", text, flags=re.DOTALL)
            else:
                text = text.replace('Type="Edm.String"', 'Type="Edm.Unexpected"')
            body = text.encode()
        elif response.content_type.startswith("multipart/mixed"):
            boundary = response.content_type.split("boundary=")[1]
            if kind == "missing":
                body = f"--{boundary}--\r\n".encode()
            else:
                body = re.sub(rb"\{.*\}", b'"unexpected"', body)
        elif body:
            body = json.dumps(reshape_json(json.loads(body), self.payload_keys, kind)).encode()
        return SimResponse(response.status, body, response.content_type, dict(response.headers))

    # --- endpoints -------------------------------------------------------------------------------------

    def token(self, request: SimRequest) -> SimResponse:
        if self.faults.take_rate_limit():  # XSUAA limits token requests too
            return json_response(429, {"error": "too_many_requests"}, **{"Retry-After": "5"})
        form = request.form()
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        client = (
            _basic(value) if scheme.lower() == "basic" else (form.get("client_id"), form.get("client_secret"))
        )
        if form.get("grant_type") != "client_credentials":
            return json_response(
                400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}
            )
        if client != (self.client_id, self.client_secret):
            return json_response(401, {"error": "unauthorized", "error_description": "Bad credentials"})
        token = self.tokens.issue("eyJhbGciOiJSUzI1NiJ9.")
        return json_response(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": int(self.tokens.ttl),
                "scope": "uaa.resource",
                "jti": uuid.uuid4().hex,
            },
        )

    def service_document(self, request: SimRequest) -> SimResponse:
        service = BP if f"/{BP}" in request.path else SO
        sets = (
            ["A_AddressEmailAddress", "A_BusinessPartner", "A_BusinessPartnerAddress"]
            if service == BP
            else ["A_SalesOrder", "A_SalesOrderItem"]
        )
        return json_response(200, {"d": {"EntitySets": sets}})

    def metadata(self, request: SimRequest) -> SimResponse:
        service = BP if f"/{BP}/" in request.path else SO
        text = (METADATA / f"{service}.xml").read_text().replace("https://sap.example.invalid", self.base_url)
        return SimResponse(200, text.encode(), "application/xml")

    def get(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        entity_set, key = request.match["set"], request.match["key"]
        service = BP if entity_set == "A_BusinessPartner" else SO
        try:
            return self._get(request, entity_set, key)
        except ODataError as exc:
            return self.error_json(exc, service)

    def _expand(self, request: SimRequest, allowed: set[str]) -> frozenset[str]:
        expand: set[str] = set()
        for path in filter(None, (p.strip() for p in request.query.get("$expand", "").split(","))):
            if path not in allowed:
                raise ODataError(400, "/IWBEP/CM_MGW_RT/021", f"Property '{path.split('/')[-1]}' is invalid")
            expand.add(path)
            if "/" in path:
                expand.add(path.split("/")[0])
        return frozenset(expand)

    def _get(self, request: SimRequest, entity_set: str, key: str | None) -> SimResponse:
        bp = entity_set == "A_BusinessPartner"
        table = self.tables["contacts" if bp else "orders"]
        allowed = (
            {"to_BusinessPartnerAddress", "to_BusinessPartnerAddress/to_EmailAddress"} if bp else {"to_Item"}
        )
        expand = self._expand(request, allowed)
        render = self.render_partner if bp else self.render_order
        if key is not None:
            row = table.rows.get(key)
            if row is None or row.deleted:
                raise ODataError(
                    404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{entity_set}'"
                )
            return json_response(200, {"d": render(row, expand)})
        query = request.query
        rows = [r for r in table.since() if not r.deleted]
        if query.get("$filter"):
            try:
                predicate = FilterParser(query["$filter"], self.value).parse()
            except ValueError as exc:
                raise ODataError(400, "/IWBEP/CM_MGW_RT/022", f"Invalid filter expression: {exc}") from None
            rows = [r for r in rows if predicate(r)]
        order = [part.split() for part in query.get("$orderby", "").split(",") if part.strip()]
        ascending = all(len(w) == 1 or w[1] == "asc" for w in order)
        if ascending and [w[0] for w in order] == CHANGE_ORDER[entity_set]:
            order = []  # the table's own (change time, key) order: already sorted
        for words in reversed(order):
            desc = len(words) > 1 and words[1] == "desc"
            rows.sort(key=partial(_sort_key, self.value, words[0]), reverse=desc)
        if not query.get("$orderby", "").strip():
            rows.sort(key=lambda r: r.id)
        total = len(rows)
        try:
            skip = int(query.get("$skip") or 0)
            top = int(query["$top"]) if query.get("$top") else None
            skiptoken = int(query.get("$skiptoken") or 0)
        except ValueError:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/022", "Invalid system query option value") from None
        remaining = None if top is None else max(0, top - skiptoken)
        start = skip + skiptoken
        size = self.max_page_size if remaining is None else min(remaining, self.max_page_size)
        page = rows[start : start + size]
        results = [render(r, expand) for r in page]
        d: dict[str, Any] = {"results": results}
        if query.get("$inlinecount") == "allpages":
            d["__count"] = str(total)
        more = start + size < len(rows) and (remaining is None or size < remaining)
        if more:
            params = {k: v for k, v in query.items() if k != "$skiptoken"}
            params["$skiptoken"] = str(skiptoken + size)
            d["__next"] = self.base_url + request.path + "?" + urlencode(params)
        return json_response(200, {"d": d})

    # --- writes ----------------------------------------------------------------------------------------

    def direct(self, request: SimRequest) -> SimResponse:
        """A modifying request outside $batch (same semantics as one change set of one operation)."""
        path = request.path.removeprefix(f"{ROOT}/{BP}/")
        try:
            status, body = self.apply([(request.method, path, request.body)])[0]
        except ODataError as exc:
            return self.error_json(exc)
        return json_response(status, body) if body is not None else SimResponse(status, b"")

    def apply(self, operations: list[tuple[str, str, bytes]]) -> list[tuple[int, Any]]:
        """Validate every operation of a change set, then apply them all (atomic, like one SAP LUW)."""
        plans = [self._plan(method, path, body) for method, path, body in operations]
        return [plan() for plan in plans]

    def _plan(self, method: str, path: str, body: bytes) -> Callable[[], tuple[int, Any]]:
        path = path.split("?")[0].lstrip("/")
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/000", "Malformed request body: JSON expected") from None
        if not isinstance(payload, dict):
            raise ODataError(400, "/IWBEP/CM_MGW_RT/000", "Malformed request body: object expected")
        table = self.tables["contacts"]
        if method == "POST" and path == "A_BusinessPartner":
            return self._plan_create(payload)
        match = re.fullmatch(r"A_BusinessPartner\('([^']*)'\)", path)
        if match and method in ("PATCH", "PUT", "MERGE"):
            row = table.rows.get(match[1])
            if row is None:
                raise ODataError(404, "/IWBEP/CM_MGW_RT/020", f"Business partner {match[1]} does not exist")
            changes = self._fields(payload, BP_WRITABLE)
            if row.data.get("BusinessPartnerCategory") == "1" and changes.get("LastName", "x") == "":
                raise ODataError(400, "R1/086", "Enter a last name", "LastName")
            return _update(table, row.id, changes)
        match = re.fullmatch(
            r"A_BusinessPartnerAddress\(BusinessPartner='([^']*)',AddressID='([^']*)'\)", path
        )
        if match and method in ("PATCH", "PUT", "MERGE"):
            row = table.rows.get(match[1])
            if row is None or row.data.get("AddressID") != match[2]:
                raise ODataError(
                    404, "/IWBEP/CM_MGW_RT/020", "Resource not found for segment 'A_BusinessPartnerAddress'"
                )
            changes = self._fields(payload, ADDRESS_WRITABLE)
            return _update(table, row.id, changes)
        match = re.fullmatch(
            r"A_AddressEmailAddress\(AddressID='([^']*)',Person='([^']*)',OrdinalNumber='1'\)", path
        )
        if match and method in ("PATCH", "PUT", "MERGE"):
            row = table.rows.get(match[2])
            if row is None or row.data.get("AddressID") != match[1]:
                raise ODataError(
                    404, "/IWBEP/CM_MGW_RT/020", "Resource not found for segment 'A_AddressEmailAddress'"
                )
            email = str(self._fields(payload, {"EmailAddress"}).get("EmailAddress", ""))
            if email and "@" not in email:
                raise ODataError(400, "AM/230", f"E-mail address {email} is not valid", "EmailAddress")
            return _update(table, row.id, {"EmailAddress": email})
        raise ODataError(
            405 if path.startswith("A_") else 404,
            "/IWBEP/CM_MGW_RT/020",
            f"Method '{method}' not allowed for '{path.split('(')[0]}'",
        )

    @staticmethod
    def _fields(payload: dict[str, Any], writable: frozenset[str] | set[str]) -> dict[str, Any]:
        fields = {k: v for k, v in payload.items() if k != "__metadata" and not k.startswith("to_")}
        for name, value in fields.items():
            if name not in writable:
                raise ODataError(
                    400, "/IWBEP/CM_MGW_RT/021", f"Property '{name}' is invalid or read-only", name
                )
            if value is not None and not isinstance(value, str):
                raise ODataError(400, "/IWBEP/CM_MGW_RT/022", f"Property '{name}' has an invalid value", name)
        return {k: v or "" for k, v in fields.items()}

    def _plan_create(self, payload: dict[str, Any]) -> Callable[[], tuple[int, Any]]:
        fields = self._fields({k: v for k, v in payload.items() if not k.startswith("to_")}, BP_WRITABLE)
        category = fields.get("BusinessPartnerCategory", "")
        if category not in ("1", "2"):
            raise ODataError(
                400, "R11/401", "Enter a valid business partner category", "BusinessPartnerCategory"
            )
        if category == "1" and not fields.get("LastName"):
            raise ODataError(400, "R1/086", "Enter a last name", "LastName")
        if category == "2" and not fields.get("OrganizationBPName1"):
            raise ODataError(400, "R1/087", "Enter a name for the organization", "OrganizationBPName1")
        addresses = payload.get("to_BusinessPartnerAddress") or {}
        addresses = addresses.get("results", []) if isinstance(addresses, dict) else addresses
        address: dict[str, Any] = {}
        email = ""
        if addresses:
            first = addresses[0] if isinstance(addresses[0], dict) else {}
            address = self._fields(
                {k: v for k, v in first.items() if not k.startswith("to_")}, ADDRESS_WRITABLE
            )
            emails = first.get("to_EmailAddress") or {}
            emails = emails.get("results", []) if isinstance(emails, dict) else emails
            if emails and isinstance(emails[0], dict):
                email = str(emails[0].get("EmailAddress") or "")
                if email and "@" not in email:
                    raise ODataError(400, "AM/230", f"E-mail address {email} is not valid", "EmailAddress")

        def create() -> tuple[int, Any]:
            self._next += 1
            key = str(self._next)
            now = int(time.time())
            data = {
                **fields,
                "AddressID": str(self._next + 10_000_000),
                "Country": address.get("Country", ""),
                "CityName": address.get("CityName", ""),
                "EmailAddress": email,
                "CreatedTs": now,
            }
            data.setdefault("Language", address.get("Language", ""))
            row = self.tables["contacts"].insert(Row(key, max(now, self._newest("contacts")), data))
            return 201, {"d": self.render_partner(row, frozenset())}

        return create

    def _newest(self, stream: str) -> int:
        newest = next(self.tables[stream].newest(), None)
        return newest.ts if newest is not None else 0

    def batch(self, request: SimRequest) -> SimResponse:
        """`$batch`: retrievals answered one by one, each change set atomically (one answer part each)."""
        self.batches += 1
        content_type = request.headers.get("content-type", "")
        if "boundary=" not in content_type:
            return self.error_json(
                ODataError(400, "/IWBEP/CM_MGW_RT/000", "Content-Type multipart/mixed expected")
            )
        boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
        out_boundary = "batchresponse_" + uuid.uuid4().hex
        parts: list[str] = []
        for part in _split(request.body.decode("utf-8", "replace"), boundary):
            headers, body = _headers(part)
            if headers.get("content-type", "").startswith("multipart/mixed"):
                inner = headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
                operations = [_http_request(p) for p in _split(body, inner)]
                try:
                    answers = self.apply([(m, p, b.encode()) for m, p, b in operations])
                except ODataError as exc:
                    parts.append(
                        _http_part(
                            exc.status, json.dumps(error_body(exc.code, exc.message, target=exc.target))
                        )
                    )
                    continue
                cs = "changesetresponse_" + uuid.uuid4().hex
                inner_parts = [_http_part(s, json.dumps(b) if b is not None else "") for s, b in answers]
                parts.append(f"Content-Type: multipart/mixed; boundary={cs}\r\n\r\n" + _join(inner_parts, cs))
            else:
                method, path, _ = _http_request(part)
                sub = SimRequest(
                    method, f"{ROOT}/{BP}/{path.split('?')[0]}", _query(path), request.headers, b""
                )
                match = re.fullmatch(
                    f"{ROOT}/{BP}/(?P<set>A_BusinessPartner)(?:\\('(?P<key>[^']*)'\\))?", sub.path
                )
                if method != "GET" or match is None:
                    parts.append(
                        _http_part(
                            400,
                            json.dumps(error_body("/IWBEP/CM_MGW_RT/000", "Only GET outside a change set")),
                        )
                    )
                    continue
                sub.match = match
                answer = self.get(sub)
                parts.append(_http_part(answer.status, answer.body.decode()))
        body = _join(parts, out_boundary)
        return SimResponse(202, body.encode(), f"multipart/mixed; boundary={out_boundary}")


def _update(table: Table, row_id: str, changes: dict[str, Any]) -> Callable[[], tuple[int, Any]]:
    def run() -> tuple[int, Any]:
        table.update(row_id, changes)
        return 204, None

    return run


def _sort_key(value: Callable[[Row, str], Any], name: str, row: Row) -> tuple[bool, Any]:
    found = value(row, name)
    return (found is None, "" if found is None else found)


# --- multipart helpers -------------------------------------------------------------------------------


def _basic(value: str) -> tuple[str, str]:
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return "", ""
    return user, password


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def _split(body: str, boundary: str) -> list[str]:
    chunks = body.split(f"--{boundary}")
    return [c.strip("\r\n") for c in chunks[1:] if not c.startswith("--")]


def _headers(part: str) -> tuple[dict[str, str], str]:
    head, _, body = part.replace("\r\n", "\n").partition("\n\n")
    headers = {}
    for line in head.split("\n"):
        name, _, value = line.partition(":")
        if value:
            headers[name.strip().lower()] = value.strip()
    return headers, body


def _http_request(part: str) -> tuple[str, str, str]:
    """(method, path, body) of an application/http part."""
    _, http = _headers(part)
    request_line, _, rest = http.partition("\n")
    _, body = _headers(rest) if rest.strip() else ({}, "")
    method, path, *_ = [*request_line.split(), "", ""]
    return method.upper(), path, body.strip()


def _query(path: str) -> dict[str, str]:
    query = path.partition("?")[2]
    return {unquote_plus(k): ",".join(v) for k, v in parse_qs(query, keep_blank_values=True).items()}


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


def _http_part(status: int, body: str) -> str:
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body.encode())}\r\n"
    head += "dataserviceversion: 2.0\r\n"
    return (
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" + head + "\r\n" + body
    )


def _join(parts: list[str], boundary: str) -> str:
    return "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
