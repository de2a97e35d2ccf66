"""SAP over SOAP with zeep and the WSDL shipped in this package: business partners (persons = contacts,
organizations = accounts) and sales orders; BAPI RETURN rows of TYPE E/A become ConnectorError."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import zeep
from lxml import etree
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError, XMLSyntaxError
from zeep.helpers import serialize_object
from zeep.plugins import Plugin
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from connectors.base import ConfigField, Connector, Cursor, Record, Stream, WriteOutcome, WriteResult
from connectors.erasure import ERASURE_STREAM, erasure_targets
from connectors.errors import AuthFailed, ConnectorError, InvalidConfig, UnexpectedResponse, VendorUnavailable
from connectors.http import HttpSession, generic_limit

WSDL = Path(__file__).parent / "wsdl" / "zhub_bupa.wsdl"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
BINDING = "{urn:sap-com:document:sap:rfc:functions}ZHUB_BUPA_BINDING"
STREAMS: dict[str, tuple[str, bool]] = {  # stream -> (vendor object, writable)
    "contacts": ("BusinessPartner/Person", True),
    "accounts": ("BusinessPartner/Organization", True),
    "orders": ("SalesOrder", False),
}


# Fields the shipped WSDL defines (ZHUB_PARTNER / ZHUB_ORDER); a field map may only point at these.
WSDL_FIELDS = {
    "contacts": {"PARTNEREXTERNAL", "FIRSTNAME", "LASTNAME", "NAME_ORG1", "EMAIL", "COUNTRY", "LANGU"},
    "orders": {"SALESDOCUMENT", "STATUS", "NET_VALUE", "CURRENCY", "SOLD_TO"},
}
WSDL_FIELDS["accounts"] = WSDL_FIELDS["contacts"]


class BapiError(ConnectorError):
    """A RETURN row of TYPE E/A: SAP refused this call's data (permanent; fix the data first)."""


class _ShapeCheck(Plugin):
    """Insist that every output element the WSDL declares is present in the answer.

    The WSDL marks them optional and zeep reads a missing table exactly like an empty one, so an answer
    from a system whose service differs from the shipped WSDL would otherwise read as "no rows".
    SAP always sends every export parameter and table, empty ones as `<RETURN/>`.
    """

    def ingress(self, envelope: Any, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        body = envelope.find(f"{{{SOAP_ENV}}}Body")
        if body is None:  # not a SOAP envelope at all (an HTML page): zeep raises XMLSyntaxError next
            return envelope, http_headers
        answer = body[0] if len(body) else None
        if answer is None:
            raise UnexpectedResponse(f"SAP answered {operation.name} with an empty SOAP body")
        if etree.QName(answer).localname == "Fault":
            return envelope, http_headers
        expected = {name for name, _ in operation.output.body.type.elements}
        missing = sorted(expected - {etree.QName(child).localname for child in answer})
        if missing:
            raise UnexpectedResponse(
                f"SAP answered {operation.name} without {', '.join(missing)}: the system's service does not "
                "match the shipped WSDL"
            )
        return envelope, http_headers


class _Transport(Transport):
    """Map HTTP-level failures before zeep parses them: it drops headers (Retry-After) and reports an
    HTML logon page as "Unknown fault"."""

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        response = super().post(address, message, headers)
        limited = generic_limit(response)
        if limited is not None:
            raise limited
        if response.status_code == 401:
            raise AuthFailed("SAP rejected the logon (HTTP 401)", status=401)
        is_xml = "xml" in response.headers.get("Content-Type", "")
        if response.status_code >= 500 and not is_xml:
            raise VendorUnavailable(f"SAP HTTP {response.status_code}", status=response.status_code)
        return response


class SapConnector(Connector):
    kind = "sap"
    label = "SAP"
    config_schema = (
        ConfigField("endpoint_url", "SOAP endpoint URL", required=True, url=True),
        ConfigField("username", "User", required=True),
        ConfigField("password", "Password", required=True, secret=True),
        ConfigField("auth", "Auth", default="basic", choices=("basic", "ws_security")),
        ConfigField("page_size", "Rows per call", default=500),
    )
    sensitive_fields = ("password",)
    default_field_map = {
        "contacts": {
            "first_name": "FIRSTNAME",
            "last_name": "LASTNAME",
            "email": "EMAIL",
            "country": "COUNTRY",
            "locale": "LANGU",
            "external_ref": "PARTNEREXTERNAL",
        },
        "accounts": {
            "name": "NAME_ORG1",
            "country": "COUNTRY",
            "locale": "LANGU",
            "external_ref": "PARTNEREXTERNAL",
        },
        "orders": {
            "number": "SALESDOCUMENT",
            "status": "STATUS",
            "amount": "NET_VALUE",
            "currency": "CURRENCY",
            "account_id": "SOLD_TO",
        },
    }

    def __init__(self, config: Mapping[str, Any], *, session: HttpSession) -> None:
        super().__init__(config, session=session)
        for stream, fields in self.field_map.items():
            unknown = sorted(set(fields.values()) - WSDL_FIELDS[stream])
            if unknown:
                raise InvalidConfig(f"sap: {stream} has no field {', '.join(unknown)} in the service WSDL")
        wsse = None
        if self.config["auth"] == "ws_security":
            wsse = UsernameToken(self.config["username"], self.config["password"])
        else:
            self.session.auth = (self.config["username"], self.config["password"])
        transport = _Transport(session=self.session, timeout=10, operation_timeout=30)
        client = zeep.Client(str(WSDL), transport=transport, wsse=wsse, plugins=[_ShapeCheck()])
        self.service = client.create_service(BINDING, str(self.config["endpoint_url"]))

    def _call(self, operation: str, *, check_return: bool = True, **params: Any) -> dict[str, Any]:
        """Call one function module; map faults, transport errors, bad XML and RETURN errors to our types."""
        try:
            result = serialize_object(getattr(self.service, operation)(**params), dict)
        except Fault as exc:
            refused = _rfc_exception(exc)
            if refused is not None:  # the function module raised one of its exceptions: our input is wrong
                raise BapiError(
                    self.session.redact(f"SAP {operation} raised {refused[0]}: {refused[1]}"),
                    True,
                    code=refused[0],
                ) from exc
            raise VendorUnavailable(
                self.session.redact(f"SAP SOAP fault in {operation}: {exc.message}"), code=str(exc.code)
            ) from exc
        except TransportError as exc:
            if exc.status_code == 401:
                raise AuthFailed("SAP rejected the logon (HTTP 401)", status=401) from exc
            if exc.status_code < 400:  # zeep's "invalid XML" (a cut-off answer) arrives as TransportError
                raise VendorUnavailable(
                    f"SAP answered {operation} with malformed XML (HTTP {exc.status_code}): the answer was "
                    "cut off or is not XML",
                    status=exc.status_code,
                ) from exc
            permanent = 400 <= exc.status_code < 500
            raise ConnectorError(
                f"SAP HTTP {exc.status_code} in {operation}", permanent, status=exc.status_code
            ) from exc
        except XMLSyntaxError as exc:  # well-formed, but not a SOAP envelope (an HTML page from a proxy)
            raise VendorUnavailable(
                f"SAP answered {operation} with a body that is not a SOAP envelope"
            ) from exc
        except ZeepError as exc:  # elements or types the shipped WSDL does not declare
            raise UnexpectedResponse(
                self.session.redact(
                    f"SAP answered {operation} in a shape the shipped WSDL does not describe: {exc.message}"
                )
            ) from exc
        # zeep unwraps single-part responses: then `result` is the RETURN table itself.
        with self.expecting(operation):
            table = result.get("RETURN") if isinstance(result, dict) and "RETURN" in result else result
            rows = (table.get("item") if isinstance(table, dict) else table) or []
            errors = [r for r in rows if r.get("TYPE") in ("E", "A")]
            if errors and check_return:
                first = errors[0]
                raise BapiError(
                    f"SAP {first['ID']}/{first['NUMBER']}: {first['MESSAGE']}",
                    permanent=True,
                    code=f"{first['ID']}/{first['NUMBER']}",
                )
        return result if isinstance(result, dict) else {"RETURN": table}

    def check_connection(self) -> None:
        self._call("Z_HUB_BUPA_GET_CHANGED", IV_CATEGORY="1", IV_MAX_ROWS=1)

    def streams(self) -> list[Stream]:
        streams = [Stream(name, obj, writable=writable) for name, (obj, writable) in STREAMS.items()]
        return [*streams, Stream(ERASURE_STREAM, "BusinessPartner", readable=False, writable=True)]

    def read(self, stream: str, *, cursor: Cursor | None = None) -> Iterator[Record]:
        """Keyset over (changed date+time, key): SAP keeps date and time apart, so both go in the filter."""
        self.stream(stream)
        cursor = cursor or Cursor()
        since = cursor.value or datetime(1970, 1, 1, tzinfo=UTC)
        after = ""
        while True:
            date, time = since.strftime("%Y-%m-%d"), since.strftime("%H:%M:%S")
            if stream == "orders":
                result = self._call(
                    "Z_HUB_SALESORDER_GET_CHANGED",
                    IV_SINCE_DATE=date,
                    IV_SINCE_TIME=time,
                    IV_AFTER_DOCUMENT=after,
                    IV_MAX_ROWS=int(self.config["page_size"]),
                )
                rows, key = (result.get("ET_ORDERS") or {}).get("item") or [], "SALESDOCUMENT"
            else:
                result = self._call(
                    "Z_HUB_BUPA_GET_CHANGED",
                    IV_CATEGORY="1" if stream == "contacts" else "2",
                    IV_SINCE_DATE=date,
                    IV_SINCE_TIME=time,
                    IV_AFTER_PARTNER=after,
                    IV_MAX_ROWS=int(self.config["page_size"]),
                )
                rows, key = (result.get("ET_PARTNERS") or {}).get("item") or [], "PARTNER"

            record = None
            for raw in rows:
                record = self._record(stream, raw, key)
                if not cursor.covers(record):
                    yield record
            if result.get("EV_MORE") != "X" or record is None:
                return
            since, after = record.updated_at, record.external_id

    def _record(self, stream: str, raw: dict[str, Any], key: str) -> Record:
        updated = datetime.strptime(f"{raw['CHANGED_DATE']} {raw['CHANGED_TIME']}", "%Y-%m-%d %H:%M:%S")
        raw = {k: v for k, v in raw.items() if v is not None}
        return Record(str(raw[key]), updated.replace(tzinfo=UTC), self.to_canonical(stream, raw), raw)

    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Upsert by PARTNEREXTERNAL: look the number up, then change or create (SAP has no upsert BAPI)."""
        self.stream(stream, for_write=True)
        if stream == ERASURE_STREAM:
            return self._erasure_write(records)
        category = "1" if stream == "contacts" else "2"
        result = WriteResult()
        for record in records:
            ext = str(record["external_id"])
            data = {
                k: v for k, v in self.to_vendor(stream, record["fields"]).items() if k != "PARTNEREXTERNAL"
            }
            # "Does not exist" is an E row here, and the answer we want: read it, do not raise it.
            found = self._call("BAPI_BUPA_GET_NUMBERS", check_return=False, BUSINESSPARTNEREXTERN=ext)
            partner = str(found.get("BUSINESSPARTNEROUT") or "")
            try:
                if partner:
                    self._call("BAPI_BUPA_CENTRAL_CHANGE", BUSINESSPARTNER=partner, DATA=data)
                    result.outcomes.append(WriteOutcome(ext, partner, created=False))
                else:
                    created = self._call(
                        "BAPI_BUPA_CREATE_FROM_DATA", PARTNERCATEGORY=category, PARTNEREXTERNAL=ext, DATA=data
                    )
                    if not created.get("BUSINESSPARTNER"):
                        raise UnexpectedResponse(
                            "SAP answered BAPI_BUPA_CREATE_FROM_DATA without a BUSINESSPARTNER number"
                        )
                    result.outcomes.append(WriteOutcome(ext, str(created["BUSINESSPARTNER"]), created=True))
            except BapiError as exc:  # this record's data was refused; the others may still go through
                result.outcomes.append(WriteOutcome(ext, error=exc.message))
        return result

    # --- erasure requests (issue 22) -------------------------------------------------------------

    def _erasure_write(self, records: Sequence[Mapping[str, Any]]) -> WriteResult:
        """Mark the subject's business partners for deletion (the central archiving flag): SAP's own way,
        which the system's archiving (ILM) run then carries out; only the partner numbers SAP holds are sent.
        A partner that no longer exists counts as done."""
        result = WriteResult()
        objects = {name: obj for name, (obj, _w) in STREAMS.items() if name in ("contacts", "accounts")}
        for record in records:
            flagged: list[str] = []
            for _obj, partner in erasure_targets(record["fields"], objects):
                try:
                    self._call("BAPI_BUPA_CENTRAL_CHANGE", BUSINESSPARTNER=partner,
                               DATA={"CENTRALARCHIVINGFLAG": "X"})  # fmt: skip
                except BapiError as exc:
                    if exc.code != "R11/003":  # R11/003: the partner does not exist (any more)
                        raise
                    continue
                flagged.append(partner)
            result.outcomes.append(WriteOutcome(str(record["external_id"]), ",".join(flagged)[:255]))
        return result


def _rfc_exception(fault: Fault) -> tuple[str, str] | None:
    """(Name, Text) of a Client fault whose detail is a function module's `<FM>.Exception` element, the
    way the WSDL declares it; None for any other fault (a technical one: retry later)."""
    if not str(fault.code or "").endswith("Client") or fault.detail is None or not len(fault.detail):
        return None
    element = fault.detail[0]
    if not etree.QName(element).localname.endswith(".Exception"):
        return None
    name = (element.findtext("Name") or "").strip()
    return (name, (element.findtext("Text") or "").strip()) if name else None
