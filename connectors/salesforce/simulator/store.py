"""The simulated org's data: one table per sObject with the seeded multilingual rows, how a row reads
(computed fields, the JSON of a record, the fields a GET asks for), validation of a write, the JSON-array
error envelopes every endpoint answers with, and the writes the case helpers share (CaseComment,
EmailMessage). `SalesforceStore` is the base of every endpoint module's class."""

from __future__ import annotations

import json
import time
from typing import Any

from connectors.salesforce.simulator.schema import (
    CLOSED_STATUSES,
    DEFAULT_QUEUE,
    LANGUAGE,
    OBJECTS,
    READ_ONLY,
    SYSTEM_FIELDS,
    sf_id,
    sf_time,
)
from connectors.simulation import (
    LOCALES,
    Row,
    SimRequest,
    SimResponse,
    Table,
    TicketSimulator,
    json_response,
    seed_ts,
)


class SalesforceStore(TicketSimulator):
    """Tables, seed data, row rendering, validation and error envelopes of the Salesforce simulator."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._next_id: dict[str, int] = {}
        self._seed()

    # --- seed data and inserts ----------------------------------------------------------------------

    def _seed(self) -> None:
        for obj, (stream, _prefix, _fields, _req) in OBJECTS.items():
            self.tables[stream] = Table(obj, unique=("Ext_Id__c",))
            self._next_id[obj] = self.counts.get(stream, 0)
        seed, n = self.seed, self.counts
        for i in range(n["accounts"]):
            c = seed.company(i)
            self._add(
                "Account",
                i,
                {
                    "Name": c["name"],
                    "Website": c["website"],
                    "BillingCountry": c["country"],
                    "Industry": c["industry"],
                    "Ext_Id__c": None,
                },
            )
        accounts = max(1, n["accounts"])
        for i in range(n["contacts"]):
            p = seed.person(i)
            self._add(
                "Contact",
                i,
                {
                    "FirstName": p["first_name"],
                    "LastName": p["last_name"],
                    "Email": p["email"],
                    "Phone": p["phone"],
                    "MailingCountry": p["country"],
                    "Locale__c": p["locale"],
                    "AccountId": sf_id("001", p["company_index"] % accounts),
                    "Ext_Id__c": None,
                },
            )
        for i in range(n["tickets"]):
            t = seed.ticket(i)
            self._add(
                "Case",
                i,
                {
                    "CaseNumber": f"{i + 1:08d}",
                    "Subject": t["subject"],
                    "Description": t["description"],
                    "Status": t["status"],
                    "Priority": t["priority"],
                    "ContactId": sf_id("003", t["person_index"] % max(1, n["contacts"])),
                    "Language__c": t["locale"],
                    "Ext_Id__c": None,
                    "OwnerId": DEFAULT_QUEUE,
                },
            )
        for i in range(n["orders"]):
            o = seed.order(i)
            self._add(
                "Order",
                i,
                {
                    "OrderNumber": o["number"],
                    "Status": o["status"],
                    "TotalAmount": o["amount"],
                    "CurrencyIsoCode": o["currency"],
                    "AccountId": sf_id("001", o["company_index"] % accounts),
                    "EffectiveDate": "2024-01-15",
                },
            )
        for i in range(n["articles"]):
            a = seed.article(i)
            self._add(
                "Knowledge__kav",
                i,
                {
                    "Title": a["title"],
                    "Body__c": a["body"],
                    "Language": LANGUAGE[a["locale"]],
                    "UrlName": a["url_name"],
                    "PublishStatus": "Online",
                    # Seed articles come in groups of one per locale: translations share the article's
                    # id and number, and the first is the master language.
                    "ArticleNumber": f"{i // len(LOCALES) + 1:09d}",
                    "KnowledgeArticleId": sf_id("kA0", i // len(LOCALES)),
                    "IsMasterLanguage": i % len(LOCALES) == 0,
                },
            )

    def _add(self, obj: str, i: int, data: dict[str, Any], ts: int | None = None) -> Row:
        stream, prefix, _f, _r = OBJECTS[obj]
        row = Row(sf_id(prefix, i), seed_ts(i) if ts is None else ts, data)
        data["CreatedDate"] = sf_time(row.ts)
        if obj == "Case" and not data.get("CaseNumber"):
            data["CaseNumber"] = f"{i + 1:08d}"  # an auto-number field: Salesforce assigns it
        return self.tables[stream].insert(row)

    def case_comment_add(
        self, case_id: str, body: str, *, public: bool, user: tuple[str, str], ts: int | None = None
    ) -> Row:
        """Add a CaseComment to a case (stamped now, or at `ts`); the case's SystemModstamp moves too."""
        table = self.tables["case_comments"]
        with table.lock:
            n = self._next_id["CaseComment"]
            self._next_id["CaseComment"] += 1
        data = {"ParentId": case_id, "CommentBody": body, "IsPublished": public, "CreatedById": user[0],
                "_created_by_name": user[1]}  # fmt: skip
        row = self._add("CaseComment", n, data, ts=int(time.time()) if ts is None else ts)
        self.tables["tickets"].update(case_id, {})
        return row

    def case_email_add(
        self,
        case_id: str,
        text: str,
        *,
        incoming: bool,
        from_name: str,
        html: str = "",
        ts: int | None = None,
    ) -> Row:
        """Add an EmailMessage to a case (Email-to-Case): incoming from the customer, or sent by an agent."""
        table = self.tables["case_emails"]
        with table.lock:
            n = self._next_id["EmailMessage"]
            self._next_id["EmailMessage"] += 1
        stamp = int(time.time()) if ts is None else ts
        data = {"ParentId": case_id, "Subject": "Re: your case", "TextBody": text, "HtmlBody": html,
                "Incoming": incoming, "FromName": from_name, "Status": "0" if incoming else "3",
                "MessageDate": sf_time(stamp)}  # fmt: skip
        row = self._add("EmailMessage", n, data, ts=stamp)
        self.tables["tickets"].update(case_id, {})
        return row

    # --- reading rows -----------------------------------------------------------------------------

    def _fields_of(self, obj: str) -> set[str]:
        return set(SYSTEM_FIELDS) | set(OBJECTS[obj][2]) | {"CreatedDate"} | set(READ_ONLY.get(obj, ()))

    def _value(self, row: Row, field: str) -> Any:
        if field == "Id":
            return row.id
        if field == "IsClosed":
            return row.data.get("Status") in CLOSED_STATUSES
        if field == "CreatedBy.Name":
            return row.data.get("_created_by_name")
        if field in ("SystemModstamp", "LastModifiedDate"):
            return sf_time(row.ts)
        if field == "IsDeleted":
            return row.deleted
        return row.data.get(field)

    def _row_json(self, obj: str, fields: tuple[str, ...], row: Row) -> bytes:
        cached = row.cache.get(fields)
        if cached is None:
            payload: dict[str, Any] = {
                "attributes": {"type": obj, "url": f"/services/data/v59.0/sobjects/{obj}/{row.id}"}
            }
            for f in fields:
                if f == "CreatedBy.Name":  # a relationship field comes back as a nested record
                    user = {
                        "type": "User",
                        "url": f"/services/data/v59.0/sobjects/User/{row.data.get('CreatedById')}",
                    }
                    payload["CreatedBy"] = {"attributes": user, "Name": self._value(row, f)}
                else:
                    payload[f] = self._value(row, f)
            cached = row.cache[fields] = json.dumps(
                payload, ensure_ascii=False, separators=(",", ":")
            ).encode()
        return cached

    def _get_fields(self, obj: str, request: SimRequest) -> tuple[str, ...]:
        known = {f.lower(): f for f in self._fields_of(obj) if "." not in f}
        wanted = [
            known[f.strip().lower()]
            for f in request.query.get("fields", "").split(",")
            if f.strip().lower() in known
        ]
        return tuple(wanted) if wanted else tuple(sorted(known.values()))

    # --- validation and errors ------------------------------------------------------------------

    def _validate(self, obj: str, data: dict[str, Any], *, creating: bool) -> list[dict[str, Any]]:
        writable = OBJECTS[obj][2]
        unknown = [f for f in data if f not in writable]
        if unknown:
            return [
                {
                    "statusCode": "INVALID_FIELD",
                    "message": f"No such column '{unknown[0]}' on sobject of type {obj}",
                    "fields": unknown,
                }
            ]
        missing = [f for f in OBJECTS[obj][3] if creating and not data.get(f)]
        if missing:
            return [
                {
                    "statusCode": "REQUIRED_FIELD_MISSING",
                    "message": f"Required fields are missing: [{', '.join(missing)}]",
                    "fields": missing,
                }
            ]
        return []

    def _errors(self, status: int, code: str, message: str) -> SimResponse:
        return json_response(status, [{"message": message, "errorCode": code}])

    def error(self, status: int, message: str) -> SimResponse:
        codes = {
            404: "NOT_FOUND",
            500: "UNKNOWN_EXCEPTION",
            502: "SERVER_UNAVAILABLE",
            503: "SERVER_UNAVAILABLE",
        }
        return self._errors(status, codes.get(status, "UNKNOWN_EXCEPTION"), message)

    def rate_limited(self, request: SimRequest) -> SimResponse:
        return self._errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")

    def _record_errors(self, status: int, errors: list[dict[str, Any]]) -> SimResponse:
        return json_response(
            status,
            [
                {"message": e["message"], "errorCode": e["statusCode"], "fields": e.get("fields", [])}
                for e in errors
            ],
        )

    def _live(self, obj: str, row_id: str) -> tuple[Row | None, SimResponse | None]:
        """The record, or the answer Salesforce gives for an unknown type, an unknown id or a deleted row."""
        if obj not in OBJECTS:
            return None, self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        row = self.tables[OBJECTS[obj][0]].rows.get(row_id)
        if row is None:
            return None, self._errors(404, "NOT_FOUND", "The requested resource does not exist")
        if row.deleted:
            return None, self._errors(404, "ENTITY_IS_DELETED", "entity is deleted")
        return row, None
