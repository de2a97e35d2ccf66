"""The support side of a case: its comments, the agent helper (a support agent comments and/or moves
the case's status) and the Outbound Message (SOAP notifications) that announces the change to the hub's
webhook URL, as a Salesforce workflow would."""

from __future__ import annotations

import uuid
from typing import Any
from xml.sax.saxutils import escape

from connectors.salesforce.simulator.schema import AGENT_STATUSES, AGENT_USER, ORG_ID
from connectors.salesforce.simulator.store import SalesforceStore
from connectors.simulation import Row


class CaseActivity(SalesforceStore):
    """Case comments, the agent helper and Outbound Messages."""

    def case_comments(self, case_id: str) -> list[Row]:
        """The case's comments, oldest first."""
        return [r for r in self.tables["case_comments"].since() if r.data["ParentId"] == case_id]

    def case(self, ticket: str) -> Row:
        """Find a case by Id, CaseNumber or external id (Ext_Id__c); KeyError when there is none."""
        return self.ticket_row(self.tables["tickets"], ticket, external="Ext_Id__c", number="CaseNumber")

    def agent(
        self, *, ticket: str, body: str = "", public: bool = True, state: str | None = None, author: str = ""
    ) -> dict[str, Any]:
        self.agent_check(body, state)
        row = self.case(ticket)
        entry = None
        if body.strip():
            user = (AGENT_USER[0], author or AGENT_USER[1])
            entry = self.case_comment_add(row.id, body, public=public, user=user)
        if state:
            self.tables["tickets"].update(row.id, {"Status": AGENT_STATUSES.get(state, state)})
        return {
            "ticket": row.id,
            "number": row.data.get("CaseNumber"),
            "comment_id": entry.id if entry else None,
            "state": row.data.get("Status"),
            "webhook": self.announce(row),
        }

    def announce(self, case: Row) -> dict[str, Any]:
        """An Outbound Message for the changed case: SOAP `notifications` with the org id and one
        Notification (its Id is what the receiver de-duplicates by); no signature, the registered URL
        carries the shared secret. Salesforce wants `<Ack>true</Ack>` back (else it retries)."""
        note_id = "04l" + uuid.uuid4().hex[:15]
        fields = "".join(
            f"<sf:{name}>{escape(str(case.data.get(name) or ''))}</sf:{name}>"
            for name in ("CaseNumber", "Status")
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body>"
            '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
            f"<OrganizationId>{ORG_ID}</OrganizationId>"
            "<ActionId>04kHb0000000001AAA</ActionId>"
            '<SessionId xsi:nil="true"/>'
            f"<EnterpriseUrl>{self.base_url}/services/Soap/c/59.0/{ORG_ID[:15]}</EnterpriseUrl>"
            f"<PartnerUrl>{self.base_url}/services/Soap/u/59.0/{ORG_ID[:15]}</PartnerUrl>"
            f"<Notification><Id>{note_id}</Id>"
            '<sObject xsi:type="sf:Case" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"<sf:Id>{case.id}</sf:Id>{fields}</sObject></Notification>"
            "</notifications></soapenv:Body></soapenv:Envelope>"
        ).encode()
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        return self.send_webhook(note_id, body, headers)
