"""The simulated org's schema: which sObjects exist, the canonical stream each one serves, its id prefix,
writable and required fields, the fields Salesforce computes, lookups (describe's `referenceTo`), the users
and queue that own records, and how ids and timestamps are written. Pure data, no state: every other module
of the simulator reads it."""

from __future__ import annotations

import time

API = r"/services/data/v(?P<version>\d+\.\d)"
ORG_ID = "00DHb0000000001EAA"
LANGUAGE = {"en": "en_US", "de": "de", "fr": "fr", "es": "es", "ja": "ja"}
SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp")

# sObject -> (canonical stream, id prefix, writable fields, required on create)
OBJECTS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "Contact": (
        "contacts",
        "003",
        ("FirstName", "LastName", "Email", "Phone", "MailingCountry", "Locale__c", "AccountId", "Ext_Id__c"),
        ("LastName",),
    ),
    "Account": ("accounts", "001", ("Name", "Website", "BillingCountry", "Industry", "Ext_Id__c"), ("Name",)),
    "Case": (
        "tickets",
        "500",
        (
            "CaseNumber",
            "Subject",
            "Description",
            "Status",
            "Priority",
            "ContactId",
            "Language__c",
            "Ext_Id__c",
            "OwnerId",
        ),
        (),
    ),
    "CaseComment": ("case_comments", "00a", ("ParentId", "CommentBody", "IsPublished"), ("ParentId",)),
    "EmailMessage": (
        "case_emails",
        "02s",
        (
            "ParentId",
            "Subject",
            "TextBody",
            "HtmlBody",
            "Incoming",
            "FromName",
            "FromAddress",
            "ToAddress",
            "Status",
            "MessageDate",
        ),
        ("ParentId",),
    ),
    "Order": (
        "orders",
        "801",
        ("OrderNumber", "Status", "TotalAmount", "CurrencyIsoCode", "AccountId", "EffectiveDate"),
        ("AccountId", "EffectiveDate", "Status"),
    ),
    "Knowledge__kav": (
        "articles",
        "ka0",
        (
            "Title",
            "Body__c",
            "Language",
            "UrlName",
            "PublishStatus",
            "ArticleNumber",
            "KnowledgeArticleId",
            "IsMasterLanguage",
        ),
        ("Title", "UrlName"),
    ),
    "Lead": (
        "leads",
        "00Q",
        ("FirstName", "LastName", "Email", "Company", "LeadSource", "Status", "Ext_Id__c"),
        ("LastName", "Company"),
    ),
}
STREAM_OBJECT = {stream: name for name, (stream, *_rest) in OBJECTS.items()}
#: Fields Salesforce computes (readable in SOQL, never written): a closed status, who wrote a comment.
READ_ONLY: dict[str, tuple[str, ...]] = {
    "Case": ("IsClosed",),
    "CaseComment": ("CreatedById", "CreatedBy.Name"),
}
#: Lookup fields and the object they point at (describe's `referenceTo`).
REFERENCE_FIELDS = {"AccountId": "Account", "ContactId": "Contact", "ParentId": "Case", "OwnerId": "Group",
                    "CreatedById": "User", "KnowledgeArticleId": "Knowledge__ka"}  # fmt: skip
INTEGRATION_USER = ("005Hb0000000001AAA", "Integration User")  # the connected app's user (CreatedBy)
AGENT_USER = ("005Hb0000000002AAA", "Maria Agent")
DEFAULT_QUEUE = "00GHb0000000001AAA"  # the "Support" queue new cases belong to
CLOSED_STATUSES = ("Closed",)
#: What the agent helper's portable states become; any other value is taken as a Case.Status.
AGENT_STATUSES = {"open": "Working", "resolved": "Resolved", "closed": "Closed"}


def sf_time(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(ts))


def sf_id(prefix: str, n: int) -> str:
    return f"{prefix}Hb{n:010d}AAA"
