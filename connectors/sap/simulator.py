"""SAP SOAP simulator for the shipped ZHUB_BUPA WSDL: basic auth or WS-Security UsernameToken, BAPIRET2
RETURN tables for business errors, SOAP faults (HTTP 500) for technical ones and for the function
modules' exceptions (detail `<FM>.Exception`, as the WSDL declares), gateway 429s."""

from __future__ import annotations

import base64
import calendar
import time
import uuid
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

from connectors.simulation import Row, SimRequest, SimResponse, Simulator, Table, seed_ts

NS = "urn:sap-com:document:sap:rfc:functions"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PATH = "/sap/bc/srt/rfc/sap/zhub_bupa/100/zhub_bupa/zhub_bupa_binding"
WSDL = Path(__file__).parent / "wsdl" / "zhub_bupa.wsdl"
PARTNER_FIELDS = (
    "PARTNER",
    "PARTNEREXTERNAL",
    "CATEGORY",
    "FIRSTNAME",
    "LASTNAME",
    "NAME_ORG1",
    "EMAIL",
    "COUNTRY",
    "LANGU",
    "CHANGED_DATE",
    "CHANGED_TIME",
)
DATA_FIELDS = ("FIRSTNAME", "LASTNAME", "NAME_ORG1", "EMAIL", "COUNTRY", "LANGU", "CENTRALARCHIVINGFLAG")
ORDER_FIELDS = ("SALESDOCUMENT", "STATUS", "NET_VALUE", "CURRENCY", "SOLD_TO", "CHANGED_DATE", "CHANGED_TIME")
STATUS = {"Draft": "A", "Activated": "B", "Shipped": "B", "Delivered": "C", "Cancelled": "C"}  # GBSTK
ENVELOPE = (
    '<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Header/>'
    "<soap-env:Body>{}</soap-env:Body></soap-env:Envelope>"
)


def sap_date_time(ts: int) -> tuple[str, str]:
    return time.strftime("%Y-%m-%d", time.gmtime(ts)), time.strftime("%H:%M:%S", time.gmtime(ts))


def ret(kind: str, msg_id: str, number: str, message: str) -> dict[str, str]:
    return {"TYPE": kind, "ID": msg_id, "NUMBER": number, "MESSAGE": message}


class RfcRaise(Exception):
    """A classic exception of a function module (RAISE ... in ABAP): a SOAP fault whose detail is the
    module's `<FM>.Exception` element, as the WSDL declares it."""

    def __init__(self, name: str, text: str, msg_id: str = "ZHUB", number: str = "001") -> None:
        super().__init__(text)
        self.name, self.text, self.msg_id, self.number = name, text, msg_id, number


class SapSimulator(Simulator):
    vendor = "sap"
    username = "HUB_RFC"
    password = "Sap-demo-Passw0rd"  # noqa: S105 - demo system credential

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._next = 0
        self._seed()
        self.route("GET", PATH, self.wsdl)
        self.route("POST", PATH, self.soap)

    def _seed(self) -> None:
        self.tables = {
            "contacts": Table("BUT000-1", unique=("PARTNEREXTERNAL",)),
            "accounts": Table("BUT000-2", unique=("PARTNEREXTERNAL",)),
            "orders": Table("VBAK"),
        }
        seed, n = self.seed, self.counts
        lang = {"en": "EN", "de": "DE", "fr": "FR", "es": "ES", "ja": "JA"}
        for i in range(n["contacts"]):
            p = seed.person(i)
            self._insert(
                "contacts",
                f"{1_000_000 + i:010d}",
                seed_ts(i),
                {
                    "CATEGORY": "1",
                    "FIRSTNAME": p["first_name"],
                    "LASTNAME": p["last_name"],
                    "EMAIL": p["email"],
                    "COUNTRY": p["country"],
                    "LANGU": lang[p["locale"]],
                    "PARTNEREXTERNAL": "",
                },
            )
        for i in range(n["accounts"]):
            c = seed.company(i)
            self._insert(
                "accounts",
                f"{2_000_000 + i:010d}",
                seed_ts(i),
                {
                    "CATEGORY": "2",
                    "NAME_ORG1": c["name"],
                    "COUNTRY": c["country"],
                    "LANGU": lang[c["locale"]],
                    "PARTNEREXTERNAL": "",
                },
            )
        for i in range(n["orders"]):
            o = seed.order(i)
            self._insert(
                "orders",
                f"{i + 1:010d}",
                seed_ts(i),
                {
                    "STATUS": STATUS[o["status"]],
                    "NET_VALUE": f"{o['amount']:.2f}",
                    "CURRENCY": o["currency"],
                    "SOLD_TO": f"{2_000_000 + o['company_index'] % max(1, n['accounts']):010d}",
                },
            )
        self._next = 3_000_000

    def _insert(self, stream: str, key: str, ts: int, data: dict[str, Any]) -> Row:
        return self.tables[stream].insert(Row(key, ts, data))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "endpoint_url": self.base_url + PATH,
            "wsdl_url": self.base_url + PATH + "?wsdl",
            "username": self.username,
            "password": self.password,
        }

    # --- transport-level behaviour ------------------------------------------------------------------

    def is_public(self, request: SimRequest) -> bool:
        return request.method == "GET"

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                user = password = ""
            if (user, password) == (self.username, self.password):
                return None
        elif b"UsernameToken" in request.body:
            try:
                root = etree.fromstring(request.body)
            except etree.XMLSyntaxError:
                return None  # let the handler answer with a fault
            user = root.findtext(f".//{{{WSSE}}}Username")
            password = root.findtext(f".//{{{WSSE}}}Password")
            if (user, password) == (self.username, self.password):
                return None
        # ICF answers 401 with its HTML logon error page (HTML, not XML: zeep surfaces a TransportError)
        return SimResponse(
            401,
            b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Logon Error Message</title></head>'
            b"<body><p>Logon failed</p><p>Anmeldung fehlgeschlagen</p></body></html>",
            "text/html",
            headers={"WWW-Authenticate": 'Basic realm="SAP NetWeaver Application Server"'},
        )

    def error(self, status: int, message: str) -> SimResponse:
        if status == 500:
            return self.fault(f"{message} (transaction {uuid.uuid4().hex[:16].upper()})")
        return SimResponse(status, b"", "text/html")

    def rate_limited(self, request: SimRequest) -> SimResponse:
        return SimResponse(
            429, b"", "text/plain", headers={"Retry-After": str(self.faults.rate_limit_retry_after)}
        )

    def fault(self, text: str, code: str = "soap-env:Server") -> SimResponse:
        body = f'<soap-env:Fault><faultcode>{code}</faultcode><faultstring xml:lang="en">{escape(text)}'
        body += "</faultstring><detail/></soap-env:Fault>"
        return SimResponse(500, ENVELOPE.format(body).encode(), "text/xml; charset=utf-8")

    def rfc_fault(self, operation: str, exc: RfcRaise) -> SimResponse:
        """HTTP 500, faultcode Client, faultstring the exception's name, detail `<FM>.Exception`."""
        detail = (
            f'<n0:{operation}.Exception xmlns:n0="{NS}"><Name>{escape(exc.name)}</Name>'
            f"<Text>{escape(exc.text)}</Text><Message><ID>{escape(exc.msg_id)}</ID>"
            f"<Number>{escape(exc.number)}</Number></Message></n0:{operation}.Exception>"
        )
        body = '<soap-env:Fault><faultcode>soap-env:Client</faultcode><faultstring xml:lang="en">'
        body += f"{escape(exc.name)}</faultstring><detail>{detail}</detail></soap-env:Fault>"
        return SimResponse(500, ENVELOPE.format(body).encode(), "text/xml; charset=utf-8")

    def malformed(self, request: SimRequest, response: SimResponse, kind: str) -> SimResponse:
        """`missing` drops the answer's first table (ET_*, else RETURN); `wrong_type` puts an element
        the WSDL does not declare into it, as a system with a different service version would."""
        if kind not in ("missing", "wrong_type"):
            return super().malformed(request, response, kind)
        root = etree.fromstring(response.body)
        answer = root.find(f"{{{SOAP_ENV}}}Body")[0]
        tables = [c for c in answer if etree.QName(c).localname.startswith("ET_")]
        target = (tables or answer.findall("RETURN") or list(answer))[0]
        if kind == "missing":
            answer.remove(target)
        else:
            target.clear()
            etree.SubElement(etree.SubElement(target, "item"), "ZZ_UNEXPECTED").text = "1"
        body = etree.tostring(root, xml_declaration=False, encoding="utf-8")
        return SimResponse(response.status, body, response.content_type, dict(response.headers))

    def wsdl(self, request: SimRequest) -> SimResponse:
        text = WSDL.read_text().replace("https://sap.example.invalid" + PATH, self.base_url + PATH)
        return SimResponse(200, text.encode(), "text/xml; charset=utf-8")

    # --- operations -------------------------------------------------------------------------------

    def soap(self, request: SimRequest) -> SimResponse:
        try:
            root = etree.fromstring(request.body)
        except etree.XMLSyntaxError as exc:
            return self.fault(f"XML parse error: {exc}", "soap-env:Client")
        body = root.find(f"{{{SOAP_ENV}}}Body")
        call = body[0] if body is not None and len(body) else None
        if call is None:
            return self.fault("SOAP body is empty", "soap-env:Client")
        name = etree.QName(call).localname
        params = {etree.QName(child).localname: child for child in call}
        text = {k: (v.text or "") for k, v in params.items()}
        handler = getattr(self, "op_" + name.lower(), None)
        if handler is None:
            return self.fault(f"Function module {name} not found", "soap-env:Client")
        try:
            result = handler(text, params)
        except RfcRaise as exc:
            return self.rfc_fault(name, exc)
        return SimResponse(
            200, ENVELOPE.format(self._xml(name + "Response", result)).encode(), "text/xml; charset=utf-8"
        )

    def _xml(self, element: str, result: dict[str, Any]) -> str:
        parts = [f'<n0:{element} xmlns:n0="{NS}">']
        for key, value in result.items():
            if isinstance(value, list):
                items = "".join(
                    "<item>" + "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in row.items()) + "</item>"
                    for row in value
                )
                parts.append(f"<{key}>{items}</{key}>")
            else:
                parts.append(f"<{key}>{escape(str(value))}</{key}>")
        return "".join(parts) + f"</n0:{element}>"

    def _partner(self, row: Row) -> dict[str, str]:
        date, tm = sap_date_time(row.ts)
        values = {**row.data, "PARTNER": row.id, "CHANGED_DATE": date, "CHANGED_TIME": tm}
        return {f: str(values.get(f) or "") for f in PARTNER_FIELDS}

    def _order(self, row: Row) -> dict[str, str]:
        date, tm = sap_date_time(row.ts)
        values = {**row.data, "SALESDOCUMENT": row.id, "CHANGED_DATE": date, "CHANGED_TIME": tm}
        return {f: str(values.get(f) or "") for f in ORDER_FIELDS}

    def _changed(self, stream: str, text: dict[str, str], after_key: str) -> tuple[list[Row], str]:
        since = text.get("IV_SINCE_DATE") or "1970-01-01"
        stamp = f"{since} {text.get('IV_SINCE_TIME') or '00:00:00'}"
        try:
            ts = calendar.timegm(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
        except ValueError:
            raise RfcRaise("INVALID_SINCE", f"{stamp[:40]} is not a valid date and time") from None
        try:
            limit = int(text.get("IV_MAX_ROWS") or 500)
        except ValueError:
            limit = 0
        if not 0 < limit <= 10_000:
            raise RfcRaise("INVALID_MAX_ROWS", "IV_MAX_ROWS must be between 1 and 10000", number="002")
        rows = self.tables[stream].since(ts, text.get(after_key) or None)
        return rows[:limit], "X" if len(rows) > limit else ""

    def op_z_hub_bupa_get_changed(self, text: dict[str, str], _p: Any) -> dict[str, Any]:
        category = text.get("IV_CATEGORY") or "1"
        if category not in ("1", "2"):
            return {
                "ET_PARTNERS": [],
                "EV_MORE": "",
                "RETURN": [ret("E", "R1", "010", f"Category {category} is not valid")],
            }
        rows, more = self._changed("contacts" if category == "1" else "accounts", text, "IV_AFTER_PARTNER")
        return {"ET_PARTNERS": [self._partner(r) for r in rows], "EV_MORE": more, "RETURN": []}

    def op_z_hub_salesorder_get_changed(self, text: dict[str, str], _p: Any) -> dict[str, Any]:
        rows, more = self._changed("orders", text, "IV_AFTER_DOCUMENT")
        return {"ET_ORDERS": [self._order(r) for r in rows], "EV_MORE": more, "RETURN": []}

    def _find_external(self, external: str) -> tuple[str, Row] | None:
        for stream in ("contacts", "accounts"):
            row = self.tables[stream].find("PARTNEREXTERNAL", external)
            if row is not None:
                return stream, row
        return None

    def op_bapi_bupa_get_numbers(self, text: dict[str, str], _p: Any) -> dict[str, Any]:
        found = self._find_external(text.get("BUSINESSPARTNEREXTERN", ""))
        if found is None:
            msg = f"Business partner {text.get('BUSINESSPARTNEREXTERN', '')} does not exist"
            return {"BUSINESSPARTNEROUT": "", "RETURN": [ret("E", "R11", "003", msg)]}
        return {"BUSINESSPARTNEROUT": found[1].id, "RETURN": []}

    @staticmethod
    def _data(params: dict[str, Any]) -> dict[str, str]:
        node = params.get("DATA")
        if node is None:
            return {}
        return {
            etree.QName(c).localname: (c.text or "") for c in node if etree.QName(c).localname in DATA_FIELDS
        }

    def op_bapi_bupa_create_from_data(self, text: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        category, external = text.get("PARTNERCATEGORY", ""), text.get("PARTNEREXTERNAL", "")
        data = self._data(params)
        if category not in ("1", "2"):
            return {
                "BUSINESSPARTNER": "",
                "RETURN": [ret("E", "R11", "401", "Enter a valid partner category")],
            }
        if external and self._find_external(external):
            msg = f"Business partner with external number {external} already exists"
            return {"BUSINESSPARTNER": "", "RETURN": [ret("E", "R11", "084", msg)]}
        if category == "1" and not data.get("LASTNAME"):
            return {"BUSINESSPARTNER": "", "RETURN": [ret("E", "R11", "401", "Enter a last name")]}
        if category == "2" and not data.get("NAME_ORG1"):
            return {
                "BUSINESSPARTNER": "",
                "RETURN": [ret("E", "R11", "401", "Enter a name for the organization")],
            }
        self._next += 1
        stream = "contacts" if category == "1" else "accounts"
        row = self._insert(
            stream,
            f"{self._next:010d}",
            int(time.time()),
            {**data, "CATEGORY": category, "PARTNEREXTERNAL": external},
        )
        return {
            "BUSINESSPARTNER": row.id,
            "RETURN": [ret("S", "R11", "000", f"Business partner {row.id} created")],
        }

    def op_bapi_bupa_central_change(self, text: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        partner = text.get("BUSINESSPARTNER", "")
        for stream in ("contacts", "accounts"):
            if partner in self.tables[stream].rows:
                self.tables[stream].update(partner, self._data(params))
                return {"RETURN": [ret("S", "R11", "000", f"Business partner {partner} changed")]}
        return {"RETURN": [ret("E", "R11", "003", f"Business partner {partner} does not exist")]}

    def op_bapi_salesorder_getstatus(self, text: dict[str, str], _p: Any) -> dict[str, Any]:
        doc = text.get("SALESDOCUMENT", "").zfill(10)
        row = self.tables["orders"].rows.get(doc)
        if row is None:
            return {
                "STATUSINFO": [],
                "RETURN": [
                    ret("E", "V1", "302", f"Sales document {doc} is not in the database or has been archived")
                ],
            }
        return {"STATUSINFO": [self._order(row)], "RETURN": []}

    def archiving_flagged(self) -> list[str]:
        """Business partners marked for deletion (CENTRALARCHIVINGFLAG "X"), which SAP's archiving removes."""
        return sorted(
            row.id
            for stream in ("contacts", "accounts")
            for row in self.tables[stream].rows.values()
            if row.data.get("CENTRALARCHIVINGFLAG") == "X"
        )
