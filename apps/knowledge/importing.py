"""Import knowledge articles from a vendor connection: ServiceNow `kb_knowledge` and Salesforce Knowledge.

The whole articles stream is read first, through the connection's circuit breaker and token bucket (the
same ones the sync engine uses), so a vendor that fails mid-read leaves nothing half-imported. Then every
record that maps cleanly is written in one transaction through `translation_save`, which keeps revisions,
needs-update marking and the workflow; a record that does not map (an unknown language code, a locale the
knowledge base does not use, no title) is reported with its vendor id and skipped, never guessed.

Idempotent: an unchanged vendor text writes no revision, publishes nothing and queues no indexing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _
from markdownify import MarkdownConverter

from apps.audit.services import audit_record
from apps.core.context import current_tenant
from apps.core.errors import Conflict, HubError, NotFound, ValidationFailed
from apps.integrations.services.imports import RecordsReadFailed, connection_records_read
from apps.knowledge.content import html_sanitize, markdown_escape_tags
from apps.knowledge.dispatch import IMPORT_CONNECTION_TASK, knowledge_task
from apps.knowledge.models import KnowledgeBase, Status, Translation
from apps.knowledge.services import (
    _apply_import_status,
    index_on_commit,
    translation_save,
    translation_submit,
)
from connectors.base import Record

logger = logging.getLogger(__name__)

STREAM = "articles"
#: Vendor language code -> hub locale. Only listed codes are imported: ServiceNow's own codes are not ISO
#: ("zt" is Traditional Chinese, "pb" Brazilian Portuguese, "fq" Canadian French), so a code missing here
#: is reported instead of being cut down to something that merely looks right.
VENDOR_LANGUAGES: dict[str, dict[str, str]] = {
    "servicenow": {
        "en": "en", "de": "de", "fr": "fr", "es": "es", "ja": "ja", "it": "it", "nl": "nl", "ko": "ko",
        "pt": "pt", "pb": "pt-BR", "fq": "fr-CA", "zh": "zh", "zt": "zh-Hant", "pl": "pl", "sv": "sv",
        "da": "da", "fi": "fi", "no": "nb", "cs": "cs", "hu": "hu", "ru": "ru", "tr": "tr", "th": "th",
        "he": "he", "ar": "ar",
    },
    "salesforce": {
        "en_US": "en", "en_GB": "en-GB", "en_AU": "en-AU", "en_CA": "en-CA", "de": "de", "fr": "fr",
        "fr_CA": "fr-CA", "es": "es", "es_MX": "es-MX", "ja": "ja", "it": "it", "nl_NL": "nl", "ko": "ko",
        "pt_BR": "pt-BR", "pt_PT": "pt", "zh_CN": "zh", "zh_TW": "zh-Hant", "pl": "pl", "sv": "sv",
        "da": "da", "fi": "fi", "no": "nb", "cs": "cs", "hu": "hu", "ru": "ru", "tr": "tr", "th": "th",
        "iw": "he", "ar": "ar",
    },
}  # fmt: skip
#: Canonical article fields the import needs besides the connector's default mapping. The connection's own
#: field-map overrides still win, so a tenant with custom fields keeps them.
IMPORT_FIELDS: dict[str, dict[str, str]] = {
    "servicenow": {"number": "number", "translated_from": "translated_from"},
    "salesforce": {"number": "ArticleNumber", "article_id": "KnowledgeArticleId", "state": "PublishStatus"},
}
#: Only what the vendor serves to its readers is imported (Salesforce also returns drafts and archived
#: versions of the same article).
PUBLISHED_STATES: dict[str, frozenset[str]] = {
    "servicenow": frozenset({"published"}),
    "salesforce": frozenset({"online"}),
}
SUPPORTED_KINDS = tuple(IMPORT_FIELDS)
SAFE_URL = re.compile(r"^(?:https?://|mailto:)", re.IGNORECASE)


class KnowledgeImportFailed(HubError):
    """The vendor could not be read (nothing was imported); `transient` says whether a retry may help."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RecordError:
    """One vendor record that was not imported, named by the ids a person finds it by in the vendor UI."""

    vendor_id: str
    number: str
    message: str

    def __str__(self) -> str:
        name = f"{self.number} ({self.vendor_id})" if self.number else self.vendor_id
        return f"{name}: {self.message}"


@dataclass
class ConnectionImportResult:
    read: int = 0
    saved: int = 0  # texts created or changed (each wrote a revision)
    unchanged: int = 0
    published: int = 0
    skipped: int = 0  # not published at the vendor, deleted, or an older duplicate
    errors: list[RecordError] = field(default_factory=list)
    translation_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "saved": self.saved,
            "unchanged": self.unchanged,
            "published": self.published,
            "skipped": self.skipped,
            "errors": [str(e) for e in self.errors],
        }


@dataclass(frozen=True, slots=True)
class _Text:
    vendor_id: str
    number: str
    key: str
    locale: str
    title: str
    body: str
    updated_at: datetime


# --- HTML to Markdown ------------------------------------------------------------------------------------
class _SafeMarkdown(MarkdownConverter):
    """Markdown from sanitised HTML: keeps only http(s)/mailto links and http(s) images (a vendor-relative
    attachment URL would be broken in the hub), and escapes text that reads like a tag, so an entity-encoded
    `&lt;script&gt;` stays the text it was instead of becoming a tag in the Markdown."""

    def escape(self, text: str, parent_tags: Any) -> str:
        return markdown_escape_tags(str(super().escape(text, parent_tags)))  # type: ignore[misc]

    def convert_a(self, el: Any, text: str, parent_tags: Any) -> str:
        if not SAFE_URL.match(str(el.get("href") or "").strip()):
            return text
        if el.get("title"):
            el["title"] = markdown_escape_tags(str(el["title"]))
        return str(super().convert_a(el, text, parent_tags))  # type: ignore[misc]

    def convert_img(self, el: Any, text: str, parent_tags: Any) -> str:
        for name in ("alt", "title"):
            if el.get(name):
                el[name] = markdown_escape_tags(str(el[name]))
        if not str(el.get("src") or "").strip().lower().startswith(("https://", "http://")):
            return str(el.get("alt") or "")
        return str(super().convert_img(el, text, parent_tags))  # type: ignore[misc]


def html_to_markdown(html: str) -> str:
    """Convert a vendor's rich-text body to Markdown with ATX headings (the chunker splits on them).

    The HTML is sanitised first (`html_sanitize`: scripts, handlers, frames, SVG and non-http(s) URLs go),
    and the Markdown holds no raw HTML (see apps/knowledge/content.py).
    """
    converter = _SafeMarkdown(heading_style="ATX", bullets="-")
    text = str(converter.convert(html_sanitize(html or "")))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- mapping ---------------------------------------------------------------------------------------------
def map_language(*, kind: str, code: str | None) -> str | None:
    """The hub locale of a vendor language code, or None when the code is not one we know."""
    return VENDOR_LANGUAGES.get(kind, {}).get((code or "").strip())


def _article_key(number: str) -> str:
    return number.strip().lower()


def _vendor_texts(*, kind: str, records: Iterable[Record], result: ConnectionImportResult) -> list[_Text]:
    """Turn vendor records into texts keyed by the vendor's article number; report what does not map."""
    records = list(records)
    numbers = {r.external_id: str(r.fields.get("number") or "") for r in records}
    published = PUBLISHED_STATES[kind]
    texts: dict[tuple[str, str], _Text] = {}
    for record in records:
        fields = record.fields
        number = numbers[record.external_id]
        state = str(fields.get("state") or "").strip().lower()
        if record.deleted or state not in published:
            result.skipped += 1
            continue

        def fail(message: str, number: str = number, record: Record = record) -> None:
            result.errors.append(RecordError(record.external_id, number, message))

        if kind == "servicenow":
            # A translated ServiceNow article is its own record pointing at the original one.
            parent = str(fields.get("translated_from") or "")
            key_number = numbers.get(parent, "") if parent else number
            if parent and not key_number:
                fail(_("translated from an article the connection cannot read (%(id)s)") % {"id": parent})
                continue
        else:
            key_number = number  # Salesforce translations share the article's number
        if not key_number:
            fail(_("the record has no article number"))
            continue
        code = fields.get("locale")
        locale = map_language(kind=kind, code=str(code) if code is not None else None)
        if locale is None:
            fail(_("unknown language code %(code)r: not imported") % {"code": code})
            continue
        text = _Text(
            vendor_id=record.external_id,
            number=number,
            key=_article_key(key_number),
            locale=locale,
            title=str(fields.get("title") or ""),
            body=html_to_markdown(str(fields.get("body") or "")),
            updated_at=record.updated_at,
        )
        seen = texts.get((text.key, locale))
        if seen is not None:
            result.skipped += 1  # two live versions of one text: the newer one wins
            if seen.updated_at >= text.updated_at:
                continue
        texts[(text.key, locale)] = text
    return list(texts.values())


# --- reading the vendor ------------------------------------------------------------------------------------
def _read_articles(*, connection: Any) -> list[Record]:
    """Read every article through the connection's breaker and bucket; raise KnowledgeImportFailed."""
    try:
        return connection_records_read(
            connection=connection, stream=STREAM, fields=IMPORT_FIELDS[connection.kind]
        )
    except RecordsReadFailed as exc:
        if exc.breaker_open_until is not None:
            message = _(
                "The vendor is failing; its circuit breaker is open until %(time)s. Nothing was imported."
            ) % {"time": exc.breaker_open_until.isoformat(timespec="seconds")}
        else:
            message = _("%(vendor)s could not be read: %(error)s. Nothing was imported.") % {
                "vendor": connection.name,
                "error": exc.message,
            }
        raise KnowledgeImportFailed(message, transient=exc.transient, retry_after=exc.retry_after) from None


# --- the service -------------------------------------------------------------------------------------------
def kb_import_from_connection(
    *,
    kb: KnowledgeBase,
    connection: Any,
    actor: Any = None,
    publish: bool = False,
    index_now: bool = False,
) -> ConnectionImportResult:
    """Import the articles of a ServiceNow or Salesforce connection into `kb`; call in the tenant context.

    New or changed texts are published at once with `publish` (an administrator's bulk load, like
    `kb_import`), otherwise submitted for review. Raises KnowledgeImportFailed when the vendor cannot be
    read, TransferRefused when the data policy forbids the connection's region, NotFound for a knowledge
    base or connection of another tenant and Conflict for a disabled or unsupported connection.
    """
    tenant = current_tenant()
    if kb.tenant_id != tenant.id or connection.tenant_id != tenant.id:
        raise NotFound(_("No such knowledge base or connection."))
    if connection.kind not in SUPPORTED_KINDS:
        raise Conflict(
            _("Knowledge can be imported from ServiceNow and Salesforce connections, not %(kind)s.")
            % {"kind": connection.kind}
        )
    if not connection.enabled:
        raise Conflict(_("The connection is disabled."))
    result = ConnectionImportResult()
    records = _read_articles(connection=connection)
    result.read = len(records)
    texts = _vendor_texts(kind=connection.kind, records=records, result=result)
    # The source locale first, so translations changed in the same import are not marked as outdated.
    texts.sort(key=lambda t: (t.key, t.locale != kb.source_locale, t.locale))
    publish_ids: list[int] = []
    with transaction.atomic(using=tenant.db_alias):
        for text in texts:
            try:
                with transaction.atomic(using=tenant.db_alias):
                    translation, changed = _save(kb=kb, text=text, actor=actor, kind=connection.kind)
                    if publish:
                        if _apply_import_status(
                            translation=translation, status=Status.PUBLISHED, actor=actor
                        ):
                            result.published += 1
                            publish_ids.append(translation.pk)
                    elif changed and translation.status == Status.DRAFT:
                        translation_submit(translation=translation, actor=actor)
            except ValidationFailed as exc:
                for name, messages in exc.errors.items():
                    for message in messages:
                        result.errors.append(RecordError(text.vendor_id, text.number, f"{name}: {message}"))
                continue
            result.saved += changed
            result.unchanged += not changed
            result.translation_ids.append(translation.pk)
        audit_record(
            "knowledge.imported",
            tenant=tenant,
            actor=actor,
            target=kb,
            changes={
                "connection": connection.name,
                "kind": connection.kind,
                "read": result.read,
                "saved": result.saved,
                "published": result.published,
                "errors": len(result.errors),
            },
        )
        if publish_ids and not index_now:
            index_on_commit(translation_ids=publish_ids)
    if publish_ids and index_now:
        from apps.knowledge.indexing import translations_index

        translations_index(translation_ids=publish_ids)
    return result


def _save(*, kb: KnowledgeBase, text: _Text, actor: Any, kind: str) -> tuple[Translation, bool]:
    """Create or update one text; True when it changed (the hub's own tags are kept)."""
    existing = Translation.objects.filter(
        article__kb=kb, article__key=text.key, locale=text.locale, region=""
    ).first()
    tags = list(existing.tags) if existing else []
    changed = existing is None or (existing.title, existing.body) != (text.title.strip(), text.body)
    translation = translation_save(
        kb=kb,
        key=text.key,
        locale=text.locale,
        title=text.title,
        body=text.body,
        tags=tags,
        author=actor,
        note=f"import from {kind} {text.number or text.vendor_id}",
    )
    return translation, changed


def kb_import_connection_run(
    *, kb_id: Any, connection_id: Any, actor_id: int | None = None, publish: bool = False
) -> ConnectionImportResult | None:
    """Load the rows by id and import (the task's body); None when the KB or connection is gone."""
    from django.contrib.auth import get_user_model

    from apps.integrations.models import Connection

    kb = KnowledgeBase.objects.filter(pk=kb_id).first()
    connection = Connection.objects.filter(pk=connection_id).first()
    if kb is None or connection is None:
        return None
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id is not None else None
    return kb_import_from_connection(kb=kb, connection=connection, actor=actor, publish=publish)


def kb_import_connection_queue(
    *, kb: KnowledgeBase, connection: Any, actor: Any = None, publish: bool = False
) -> None:
    """Queue an import in Celery once the current transaction commits (for the console)."""
    from apps.knowledge.services import _on_commit

    tenant = current_tenant()
    if kb.tenant_id != tenant.id or connection.tenant_id != tenant.id:
        raise NotFound(_("No such knowledge base or connection."))
    kwargs: Mapping[str, Any] = {
        "tenant_id": tenant.id,
        "kb_id": str(kb.pk),
        "connection_id": str(connection.pk),
        "actor_id": getattr(actor, "pk", None),
        "publish": publish,
    }
    _on_commit(lambda: knowledge_task(IMPORT_CONNECTION_TASK).delay(**kwargs), using=tenant.db_alias)
