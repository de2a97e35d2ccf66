"""SAP over SOAP with zeep and the WSDL shipped in this package: business partners (persons = contacts,
organizations = accounts) and sales orders; BAPI RETURN rows of TYPE E/A become ConnectorError."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import zeep
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError, XMLSyntaxError
from zeep.helpers import serialize_object
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from connectors.base import ConfigField, Connector, Cursor, Record, Stream, WriteOutcome, WriteResult
from connectors.errors import AuthFailed, ConnectorError, InvalidConfig, VendorUnavailable
from connectors.http import HttpSession, generic_limit

WSDL = Path(__file__).parent / "wsdl" / "zhub_bupa.wsdl"
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
        ConfigField("endpoint_url", "SOAP endpoint URL", required=True),
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
        client = zeep.Client(str(WSDL), transport=transport, wsse=wsse)
        self.service = client.create_service(BINDING, str(self.config["endpoint_url"]))

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call one function module; map faults, transport errors and RETURN errors to our types."""
        try:
            result = serialize_object(getattr(self.service, operation)(**params), dict)
        except Fault as exc:
            raise VendorUnavailable(
                self.session.redact(f"SAP SOAP fault: {exc.message}"), code=str(exc.code)
            ) from exc
        except TransportError as exc:
            if exc.status_code == 401:
                raise AuthFailed("SAP rejected the logon (HTTP 401)", status=401) from exc
            permanent = 400 <= exc.status_code < 500
            raise ConnectorError(f"SAP HTTP {exc.status_code}", permanent, status=exc.status_code) from exc
        except (XMLSyntaxError, ZeepError) as exc:
            raise VendorUnavailable(f"SAP answered with an unexpected shape: {exc}") from exc
        # zeep unwraps single-part responses: then `result` is the RETURN table itself.
        table = result.get("RETURN") if isinstance(result, dict) and "RETURN" in result else result
        rows = (table.get("item") if isinstance(table, dict) else table) or []
        errors = [r for r in rows if r.get("TYPE") in ("E", "A")]
        if errors:
            first = errors[0]
            raise ConnectorError(
                f"SAP {first['ID']}/{first['NUMBER']}: {first['MESSAGE']}",
                permanent=True,
                code=f"{first['ID']}/{first['NUMBER']}",
            )
        return result if isinstance(result, dict) else {"RETURN": table}

    def check_connection(self) -> None:
        self._call("Z_HUB_BUPA_GET_CHANGED", IV_CATEGORY="1", IV_MAX_ROWS=1)

    def streams(self) -> list[Stream]:
        return [Stream(name, obj, writable=writable) for name, (obj, writable) in STREAMS.items()]

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
        category = "1" if stream == "contacts" else "2"
        result = WriteResult()
        for record in records:
            ext = str(record["external_id"])
            data = {
                k: v for k, v in self.to_vendor(stream, record["fields"]).items() if k != "PARTNEREXTERNAL"
            }
            found = self.service.BAPI_BUPA_GET_NUMBERS(BUSINESSPARTNEREXTERN=ext)
            partner = (found["BUSINESSPARTNEROUT"] or "") if found is not None else ""
            try:
                if partner:
                    self._call("BAPI_BUPA_CENTRAL_CHANGE", BUSINESSPARTNER=partner, DATA=data)
                    result.outcomes.append(WriteOutcome(ext, partner, created=False))
                else:
                    created = self._call(
                        "BAPI_BUPA_CREATE_FROM_DATA", PARTNERCATEGORY=category, PARTNEREXTERNAL=ext, DATA=data
                    )
                    result.outcomes.append(WriteOutcome(ext, created["BUSINESSPARTNER"], created=True))
            except ConnectorError as exc:
                if not exc.permanent:
                    raise
                result.outcomes.append(WriteOutcome(ext, error=exc.message))
        return result
