"""Translation exchange with XLIFF 1.2: export a knowledge base for one target locale (or regional variant) so
translators work in their own CAT tool (Trados, memoQ, Phrase, OmegaT), and import what they send back.

XLIFF 1.2, not 2.0: every CAT tool imports and returns 1.2 unchanged (OmegaT and older Trados read 2.0 only
through plug-ins or not at all), and translate-toolkit's 1.2 store is its long-standing, round-trip-stable
one (its 2.0 store is new and splits segments into units of their own).

One `<file>` per target: `original` names the knowledge base, locale and region, so a file can only come
back to where it came from. One trans-unit per text field, id "<article key>:<field>[:<n>]": the title, the
body (whole: Markdown keeps its structure, code blocks and lists; CAT tools segment sentences themselves)
and each phrasing. Source is the source locale's published text; target the current working copy.

Import saves each changed text through `translation_save` (a new revision whose note names the file) and
submits it for review, exactly as an editor's "Submit for review" does: nothing is published by an import.
A text whose units have an error (unknown id, stale source, refused value) is skipped as a whole and listed;
the other texts are applied, each in its own savepoint.

The console imports in the background: a delivery of thousands of texts takes longer than a web request may.
The upload is checked at once (a refused file is a form error and nothing is stored), stored as an
XliffImport and applied by a Celery task; the import's page shows its status and then the result.

Uploads are untrusted: size-capped, then parsed by defusedxml with DTDs forbidden (no entities at all, so
no XXE and no billion laughs), and only then read by translate-toolkit, whose lxml parser also has entity
resolution and network access off.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as DefusedET
from celery.exceptions import SoftTimeLimitExceeded
from defusedxml import DefusedXmlException
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.text import slugify
from django.utils.translation import gettext as _
from translate.storage.xliff import xlifffile

from apps.audit.services import audit_record
from apps.core.context import current_tenant
from apps.core.errors import ValidationFailed
from apps.core.tasks import task_enqueue
from apps.knowledge.dispatch import XLIFF_IMPORT_TASK, knowledge_task
from apps.knowledge.models import (
    Article,
    KnowledgeBase,
    Status,
    Translation,
    XliffImport,
    XliffImportStatus,
)
from apps.knowledge.selectors import normalize_region
from apps.knowledge.services import check_allowed, phrasings_clean, translation_save, translation_submit
from apps.tenants import roles

logger = logging.getLogger(__name__)

XLIFF_NS = "urn:oasis:names:tc:xliff:document:1.2"
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
CONTENT_TYPE = "application/x-xliff+xml"
FIELDS = ("title", "body", "phrasing")
#: Most unit errors one import keeps (the count says how many more there were).
ERRORS_MAX = 500

_UNIT_ID = re.compile(
    r"^(?P<key>[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?):(?P<field>title|body|phrasing)(?::(?P<n>[1-9][0-9]{0,3}))?$"
)
_SKELETON = (
    f'<?xml version="1.0" encoding="UTF-8"?><xliff xmlns="{XLIFF_NS}" version="1.2">'
    '<file original="{original}" source-language="{source}" target-language="{target}" datatype="plaintext">'
    "<body/></file></xliff>"
)


def xliff_original(*, kb: KnowledgeBase, locale: str, region: str = "") -> str:
    """The `original` attribute of a knowledge base's file for one target (names where it may come back)."""
    return f"knowledge-base/{kb.pk}/{locale}" + (f"/{region}" if region else "")


def xliff_filename(*, kb: KnowledgeBase, locale: str, region: str = "") -> str:
    return f"{slugify(kb.name) or 'knowledge'}.{locale}{f'-{region}' if region else ''}.xlf"


def _check_target(*, kb: KnowledgeBase, locale: str, region: str, errors: dict[str, list[str]]) -> None:
    if locale not in kb.locales or locale == kb.source_locale:
        errors.setdefault("locale", []).append(
            _("Choose one of this knowledge base's target locales: %(locales)s.")
            % {"locales": ", ".join(loc for loc in kb.locales if loc != kb.source_locale) or "-"}
        )
    if region and region not in kb.regions:
        errors.setdefault("region", []).append(
            _("This knowledge base does not serve the region %(region)s.") % {"region": region}
        )


@dataclass
class _Texts:
    """The texts one exchange compares: per article key, its source (published) and target (working copy)."""

    articles: dict[str, Article]
    source: dict[str, Any]  # key -> the published Revision of the source text
    target: dict[str, Translation]
    source_tags: dict[str, list[str]]


def _texts(*, kb: KnowledgeBase, locale: str, region: str) -> _Texts:
    """Load both sides in one query; a regional target follows its region's source text, else the generic."""
    rows = (
        Translation.objects.filter(
            article__kb=kb, locale__in=[kb.source_locale, locale], region__in={"", region}
        )
        .select_related("article", "published_revision")
        .order_by("article__key", "region")
    )
    articles: dict[str, Article] = {}
    source: dict[str, Any] = {}
    source_tags: dict[str, list[str]] = {}
    target: dict[str, Translation] = {}
    for t in rows:  # generic rows first, so a regional source text replaces the generic one
        key = t.article.key
        articles[key] = t.article
        if t.locale == kb.source_locale and t.published_revision is not None:
            source[key] = t.published_revision
            source_tags[key] = list(t.tags)
        elif t.locale == locale and t.region == region:
            target[key] = t
    return _Texts(articles=articles, source=source, target=target, source_tags=source_tags)


def _note(key: str, revision: Any, text: Translation | None) -> str:
    """Notes are data for translators, in English whatever the console language (the export stays stable)."""
    if text is None:
        state = "not translated yet"
    else:
        state = str(text.status).replace("_", " ")
        if text.needs_update:
            state += ", needs update (the source changed)"
    return f"Article {key}; source revision {revision.number}; translation: {state}"


def kb_xliff_export(*, kb: KnowledgeBase, locale: str, region: str = "", actor: Any = None) -> bytes:
    """The XLIFF 1.2 file of `kb` for translators into `locale` (and `region`'s variant); audited.

    Deterministic: the same texts give the same bytes (no dates), so export → import → export is stable.
    """
    region = normalize_region(region)
    errors: dict[str, list[str]] = {}
    _check_target(kb=kb, locale=locale, region=region, errors=errors)
    if errors:
        raise ValidationFailed(_("Nothing was exported."), errors)
    check_allowed(actor=actor, perm=roles.EDIT_KNOWLEDGE, locale=locale, region=region)
    texts = _texts(kb=kb, locale=locale, region=region)
    original = xliff_original(kb=kb, locale=locale, region=region)
    store = xlifffile.parsestring(
        _SKELETON.format(original=original, source=kb.source_locale, target=locale).encode()
    )
    units = 0
    for key in sorted(texts.source):
        revision, text = texts.source[key], texts.target.get(key)
        note = _note(key, revision, text)
        fields: list[tuple[str, str, str | None, int]] = [
            (f"{key}:title", revision.title, text.title if text else None, 300),
            (f"{key}:body", revision.body, text.body if text else None, 0),
        ]
        target_phrasings = list(text.phrasings) if text else []
        for n, phrasing in enumerate(revision.phrasings, start=1):
            mine = target_phrasings[n - 1] if n <= len(target_phrasings) else None
            fields.append((f"{key}:phrasing:{n}", phrasing, mine, 200))
        for unit_id, source, target, maxwidth in fields:
            if not source:
                continue  # an empty body has nothing to translate
            unit = store.addsourceunit(source, filename=original)
            unit.setid(unit_id)
            if maxwidth:
                unit.xmlelement.set("maxwidth", str(maxwidth))
                unit.xmlelement.set("size-unit", "char")
            if target:
                unit.target = target
                unit.xmlelement.attrib.pop("approved", None)
                state = "translated"
                if text is not None and text.needs_update:
                    state = "needs-review-translation"
                elif text is not None and text.status == Status.PUBLISHED:
                    state = "final"
                unit.getlanguageNode(lang=None, index=1).set("state", state)
            unit.addnote(note, origin="developer")
            if unit_id.split(":")[1] == "phrasing":
                unit.addnote(
                    "Another way customers ask what this article answers: one short line, plain text, "
                    "never shown to customers. Translate it as a customer would ask.",
                    origin="developer",
                )
            units += 1
    data = bytes(store)
    audit_record(
        "knowledge.xliff_exported",
        tenant=current_tenant(),
        actor=actor,
        target=kb,
        changes={"locale": locale, "region": region, "units": units},
    )
    return data


# --- import ------------------------------------------------------------------------------------------------
@dataclass
class UnitError:
    line: int | None
    unit_id: str
    message: str


@dataclass
class XliffImportResult:
    locale: str = ""
    region: str = ""
    created: int = 0  # texts with a new revision, submitted for review
    unchanged: int = 0  # texts whose units brought nothing new
    errors: list[UnitError] = field(default_factory=list)
    errors_more: int = 0
    translation_ids: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """What an import keeps (XliffImport.result): counts and errors, not the ids of the texts."""
        return {
            "locale": self.locale,
            "region": self.region,
            "created": self.created,
            "unchanged": self.unchanged,
            "errors": [
                {"line": e.line, "unit_id": e.unit_id, "message": str(e.message)} for e in self.errors
            ],
            "errors_more": self.errors_more,
        }

    def error(self, line: int | None, unit_id: str, message: str) -> None:
        if len(self.errors) < ERRORS_MAX:
            self.errors.append(UnitError(line, unit_id, message))
        else:
            self.errors_more += 1


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed(_("Nothing was imported."), {"file": [message]})


def xliff_too_large() -> ValidationFailed:
    return _refuse(
        _("The file is too large: at most %(size)d MB.")
        % {"size": max(1, settings.HUB_KNOWLEDGE_XLIFF_MAX_BYTES // (1024 * 1024))}
    )


def xliff_read(data: bytes) -> Any:
    """Parse an upload safely into a translate-toolkit store, or raise ValidationFailed (field "file")."""
    if len(data) > settings.HUB_KNOWLEDGE_XLIFF_MAX_BYTES:
        raise xliff_too_large()
    try:
        root = DefusedET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise _refuse(
            _("The file declares a DTD or entities, which XLIFF files never need: refused.")
        ) from None
    except (ParseError, ValueError):
        raise _refuse(_("This is not an XML file.")) from None
    if root.tag != f"{{{XLIFF_NS}}}xliff":
        raise _refuse(
            _("This is not an XLIFF 1.2 file (export from this page, translate, and upload the same file).")
        )
    if len(root.findall(f"{{{XLIFF_NS}}}file")) != 1:
        raise _refuse(_("The file must hold exactly one <file> element (one target locale)."))
    try:
        store = xlifffile.parsestring(data)
    except Exception:
        raise _refuse(_("The XLIFF file could not be read.")) from None
    # Markdown is whitespace-significant: read every unit as exported (xml:space="preserve"), also when a tool
    # dropped the attribute (translate-toolkit would collapse the body's line breaks into spaces).
    for unit in store.units:
        unit.xmlelement.set(XML_SPACE, "preserve")
    return store


def _file_target(*, kb: KnowledgeBase, store: Any) -> tuple[str, str]:
    """The (locale, region) the file was exported for; refuses a file of another knowledge base."""
    original = store.getfilenames()[0] or ""
    prefix = f"knowledge-base/{kb.pk}/"
    if not original.startswith(prefix):
        raise _refuse(_("This file was not exported from this knowledge base."))
    locale, _sep, region = original[len(prefix) :].partition("/")
    if store.getsourcelanguage() != kb.source_locale:
        raise _refuse(
            _("The file's source language is %(found)s, but this knowledge base is written in %(source)s.")
            % {"found": store.getsourcelanguage() or "-", "source": kb.source_locale}
        )
    if (store.gettargetlanguage() or "") != locale:
        raise _refuse(
            _("The file's target language %(found)s is not the locale it was exported for (%(locale)s).")
            % {"found": store.gettargetlanguage() or "-", "locale": locale}
        )
    errors: dict[str, list[str]] = {}
    _check_target(kb=kb, locale=locale, region=region, errors=errors)
    if errors:
        raise _refuse(" ".join(m for messages in errors.values() for m in messages))
    return locale, region


@dataclass
class _Article:
    """An article's units in the file: new values per field, and where each came from for error messages."""

    key: str
    title: str | None = None
    body: str | None = None
    phrasings: dict[int, str] = field(default_factory=dict)
    units: dict[str, tuple[int | None, str]] = field(default_factory=dict)  # field -> (line, unit id)
    failed: bool = False


def _collect(*, store: Any, texts: _Texts, result: XliffImportResult) -> list[_Article]:
    """Check every unit (id, article, stale source) and group the good ones by article, in file order."""
    found: dict[str, _Article] = {}
    seen: set[str] = set()
    for unit in store.units:
        element = unit.xmlelement
        unit_id = element.get("id") or ""
        line = element.sourceline
        match = _UNIT_ID.match(unit_id)
        if match is None:
            result.error(line, unit_id, _("Unknown unit id: this file was not exported by the hub."))
            continue
        key, name, n = match["key"], match["field"], int(match["n"] or 0)
        group = found.setdefault(key, _Article(key))
        if unit_id in seen:
            result.error(line, unit_id, _("This unit appears twice."))
            group.failed = True
            continue
        seen.add(unit_id)
        if (name == "phrasing") != bool(n):
            result.error(line, unit_id, _("Unknown unit id: this file was not exported by the hub."))
            group.failed = True
            continue
        revision = texts.source.get(key)
        if key not in texts.articles or revision is None:
            result.error(
                line, unit_id, _("This knowledge base has no published article %(key)s.") % {"key": key}
            )
            group.failed = True
            continue
        if name == "phrasing":
            current = revision.phrasings[n - 1] if n <= len(revision.phrasings) else None
        else:
            current = getattr(revision, name)
        if str(unit.source or "") != (current or "\0"):
            result.error(
                line,
                unit_id,
                _("The source text changed since this file was exported: export again and translate it."),
            )
            group.failed = True
            continue
        target = str(unit.target or "")
        group.units[name if name != "phrasing" else f"phrasing:{n}"] = (line, unit_id)
        if not target.strip():
            continue  # not translated: keep what the hub has
        if name == "title":
            group.title = target
        elif name == "body":
            group.body = target
        else:
            group.phrasings[n] = target
    return list(found.values())


def _apply(
    *, kb: KnowledgeBase, locale: str, region: str, group: _Article, texts: _Texts, note: str, actor: Any
) -> Translation | None:
    """Save one article's new text and submit it for review; None when it brings nothing new."""
    text = texts.target.get(group.key)
    if text is None and group.title is None and group.body is None and not group.phrasings:
        return None
    if text is None:
        # A new text needs its title and body: half a text would stand in for the source (or, as a regional
        # variant, for the generic text) once published.
        missing = _("This text does not exist yet in %(locale)s: translate its title and body.") % {
            "locale": locale
        }
        errors = {
            name: [missing]
            for name, value in (("title", group.title), ("body", group.body))
            if value is None and getattr(texts.source[group.key], name)
        }
        if errors:
            raise ValidationFailed(missing, errors)
    refused: dict[str, list[str]] = {}
    for n, value in group.phrasings.items():  # checked one by one, so the error names its unit
        one: dict[str, list[str]] = {}
        phrasings_clean([value], one)
        if one:
            refused[f"phrasing:{n}"] = one["phrasings"]
    if refused:
        raise ValidationFailed(_("The text was not saved."), refused)
    phrasings = list(text.phrasings) if text else []
    for n, value in sorted(group.phrasings.items()):
        if n <= len(phrasings):
            phrasings[n - 1] = value
        else:
            phrasings.append(value)
    title = group.title if group.title is not None else (text.title if text else "")
    # Stored bodies end lines with "\n" (as the editor makes them); a Windows tool's "&#13;" survives XML.
    body = (group.body if group.body is not None else (text.body if text else "")).replace("\r\n", "\n")
    problems: dict[str, list[str]] = {}
    cleaned = phrasings_clean(phrasings, problems)
    if (
        text is not None
        and not problems
        and (text.title, text.body, list(text.phrasings))
        == (
            title.strip(),
            body,
            cleaned,
        )
    ):
        return None  # the common case of a re-import, without the service's locking round trips
    saved = translation_save(
        kb=kb,
        key=group.key,
        locale=locale,
        region=region,
        title=title,
        body=body,
        tags=list(text.tags) if text else texts.source_tags.get(group.key, []),
        phrasings=phrasings,
        author=actor,
        note=note,
    )
    if text is not None and saved.updated_at == text.updated_at:
        return None  # the service found nothing new after all (it saves, and so stamps, every change)
    if saved.status == Status.DRAFT:
        translation_submit(translation=saved, actor=actor)
    return saved


def _check(*, kb: KnowledgeBase, data: bytes, actor: Any) -> tuple[Any, str, str]:
    """Read the file and check it may be imported here by `actor`: the store and its (locale, region)."""
    check_allowed(actor=actor, perm=roles.EDIT_KNOWLEDGE)
    store = xliff_read(data)
    locale, region = _file_target(kb=kb, store=store)
    try:
        check_allowed(actor=actor, perm=roles.EDIT_KNOWLEDGE, locale=locale, region=region)
    except PermissionDenied as exc:
        raise _refuse(str(exc)) from None
    return store, locale, region


def _clean_name(filename: str) -> str:
    return "".join(ch for ch in (filename or "upload.xlf") if ch.isprintable())[:120]


def kb_xliff_import(
    *, kb: KnowledgeBase, data: bytes, filename: str = "", actor: Any = None, request: Any = None
) -> XliffImportResult:
    """Bring a translated XLIFF file back: changed texts become new revisions in review; audited.

    Refuses the whole file (ValidationFailed, field "file") when it is unsafe, not XLIFF 1.2 or not this
    knowledge base's; otherwise reports per-unit errors and applies every text without one. The console runs
    it in the background (`xliff_import_queue`); this is the body of that job, and of command-line use.
    """
    store, locale, region = _check(kb=kb, data=data, actor=actor)
    return _apply_file(
        kb=kb,
        store=store,
        locale=locale,
        region=region,
        name=_clean_name(filename),
        actor=actor,
        request=request,
    )


def _apply_file(
    *,
    kb: KnowledgeBase,
    store: Any,
    locale: str,
    region: str,
    name: str,
    actor: Any,
    request: Any = None,
    import_id: int | None = None,
) -> XliffImportResult:
    result = XliffImportResult(locale=locale, region=region)
    texts = _texts(kb=kb, locale=locale, region=region)
    groups = _collect(store=store, texts=texts, result=result)
    note = f"XLIFF import: {name}"
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        for group in groups:
            if group.failed:
                continue
            try:
                with transaction.atomic(using=tenant.db_alias):
                    saved = _apply(
                        kb=kb, locale=locale, region=region, group=group, texts=texts, note=note, actor=actor
                    )
            except ValidationFailed as exc:
                for field_name, messages in exc.errors.items():
                    line, unit_id = group.units.get(field_name) or next(
                        (where for name, where in group.units.items() if name.startswith(field_name[:8])),
                        next(iter(group.units.values()), (None, f"{group.key}:{field_name}")),
                    )
                    for message in messages:
                        result.error(line, unit_id, message)
                continue
            if saved is None:
                result.unchanged += 1
            else:
                result.created += 1
                result.translation_ids.append(saved.pk)
        changes: dict[str, Any] = {
            "file": name,
            "locale": locale,
            "region": region,
            "created": result.created,
            "unchanged": result.unchanged,
            "errors": len(result.errors) + result.errors_more,
        }
        if import_id is not None:
            changes["import"] = import_id
        audit_record(
            "knowledge.xliff_imported",
            tenant=tenant,
            actor=actor,
            target=kb,
            changes=changes,
            request=request,
        )
    return result


# --- background imports ------------------------------------------------------------------------------------
#: Days an import (and the file it stored) is kept.
IMPORT_RETENTION_DAYS = 30
#: Seconds a queued import waits before the sweep publishes its task again (its message was lost).
IMPORT_REQUEUE_SECONDS = 120
PURGE_BATCH = 500


def _running_lease() -> timedelta:
    """How long a run may hold an import: past its task's hard time limit the worker is gone (killed or
    lost), its transaction rolled back, and a redelivered task or the sweep may start it again."""
    return timedelta(seconds=settings.HUB_KNOWLEDGE_XLIFF_TASK_TIME_LIMIT_SECONDS + 60)


def xliff_import_queue(
    *, kb: KnowledgeBase, data: bytes, filename: str = "", actor: Any = None, request: Any = None
) -> XliffImport:
    """Check an upload as the import will (a refused file raises ValidationFailed at once and nothing is
    stored), store it and queue its task once the transaction commits; the page of the import shows the rest.
    """
    _store, locale, region = _check(kb=kb, data=data, actor=actor)
    tenant = current_tenant()
    job = XliffImport.objects.create(
        kb=kb,
        locale=locale,
        region=region,
        filename=_clean_name(filename),
        content=data,
        actor_id=getattr(actor, "pk", None),
    )
    _publish_on_commit(tenant_id=tenant.id, import_id=job.pk, using=tenant.db_alias)
    return job


def _publish_on_commit(*, tenant_id: int, import_id: int, using: str) -> None:
    from apps.knowledge.services import _on_commit

    kwargs = {"tenant_id": tenant_id, "import_id": import_id}
    # A broker outage is logged, not raised: the import is stored as queued and the sweep publishes it again.
    _on_commit(lambda: task_enqueue(knowledge_task(XLIFF_IMPORT_TASK), kwargs=kwargs), using=using)


class _Superseded(Exception):
    """Another run took the import over (this one outlived its lease): roll this one back."""


def xliff_import_run(*, import_id: int) -> XliffImport | None:
    """Apply a stored import (the task's body); None when another run has it or it is finished.

    One runner: a conditional UPDATE moves it from queued (or from a running whose lease ran out) to
    running. The file is applied and the import marked done in one transaction, so a worker that dies
    leaves nothing applied, and a redelivered task finds the import done and applies nothing twice.
    """
    now = timezone.now()
    claimed = (
        XliffImport.objects.filter(pk=import_id)
        .filter(
            Q(status=XliffImportStatus.QUEUED)
            | Q(status=XliffImportStatus.RUNNING, started_at__lt=now - _running_lease())
        )
        .update(
            status=XliffImportStatus.RUNNING,
            started_at=now,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    )
    if not claimed:
        return None
    job = XliffImport.objects.select_related("kb").get(pk=import_id)
    mine = XliffImport.objects.filter(pk=import_id, status=XliffImportStatus.RUNNING, started_at=now)
    actor = None
    if job.actor_id is not None:
        actor = get_user_model().objects.filter(pk=job.actor_id, is_active=True).first()
        if actor is None:  # never applied as the system: the uploader's rights are what allowed it
            _fail(mine, _("The account that uploaded this file no longer exists or is deactivated."))
            return XliffImport.objects.get(pk=import_id)
    # Unit errors and a failure are stored as text: in the uploader's console language, as the page was.
    with translation.override(getattr(actor, "language", None) or settings.LANGUAGE_CODE):
        if not _run(job, mine, actor):
            return None
    return XliffImport.objects.get(pk=import_id)


def _run(job: XliffImport, mine: Any, actor: Any) -> bool:
    """Apply and mark done, or mark failed; False when another run took the import over meanwhile."""
    tenant = current_tenant()
    try:
        with transaction.atomic(using=tenant.db_alias):
            store, locale, region = _check(kb=job.kb, data=bytes(job.content), actor=actor)
            result = _apply_file(
                kb=job.kb,
                store=store,
                locale=locale,
                region=region,
                name=job.filename,
                actor=actor,
                import_id=job.pk,
            )
            done = mine.update(
                status=XliffImportStatus.DONE,
                finished_at=timezone.now(),
                updated_at=timezone.now(),
                result=result.as_json(),
                failure="",
            )
            if not done:
                raise _Superseded
    except _Superseded:
        return False
    except ValidationFailed as exc:
        messages = [str(m) for ms in exc.errors.values() for m in ms] or [str(exc)]
        _fail(mine, " ".join(messages))
    except SoftTimeLimitExceeded:
        _fail(mine, _("The import took longer than allowed; nothing of this file was saved. Split the file."))
    except Exception:
        logger.exception("XLIFF import failed", extra={"import_id": job.pk})
        _fail(
            mine,
            _(
                "The import stopped on an unexpected error; nothing of this file was saved. Upload it again "
                "later, or ask your administrator to look at the logs."
            ),
        )
    return True


def _fail(mine: Any, message: str) -> None:
    now = timezone.now()
    mine.update(status=XliffImportStatus.FAILED, finished_at=now, updated_at=now, failure=str(message)[:2000])


def xliff_imports_sweep(*, now: datetime | None = None) -> tuple[int, int]:
    """Beat's sweep over every region: publish again the imports whose task was lost, and purge the imports
    (with their files) older than IMPORT_RETENTION_DAYS. Returns (queued again, purged).

    A compare-and-set on `updated_at` keeps two sweeps from publishing one import twice per interval; a
    second task for it is a no-op anyway (`xliff_import_run`).
    """
    from apps.tenants.models import Tenant

    now = now or timezone.now()
    tenants = {t.id: t for t in Tenant.objects.select_related("home_region").filter(is_active=True)}
    aliases = {t.home_region.db_alias for t in tenants.values()}
    lease = now - _running_lease()
    requeued = purged = 0
    for alias in aliases:
        rows = XliffImport.all_tenants.using(alias)
        lost = (
            rows.filter(tenant_id__in=list(tenants))
            .filter(
                Q(
                    status=XliffImportStatus.QUEUED,
                    updated_at__lt=now - timedelta(seconds=IMPORT_REQUEUE_SECONDS),
                )
                | Q(status=XliffImportStatus.RUNNING, started_at__lt=lease, updated_at__lt=lease)
            )
            .values_list("pk", "tenant_id", "updated_at")[:1000]
        )
        for pk, tenant_id, updated_at in lost:
            if rows.filter(pk=pk, updated_at=updated_at).update(updated_at=now) and task_enqueue(
                knowledge_task(XLIFF_IMPORT_TASK), kwargs={"tenant_id": tenant_id, "import_id": pk}
            ):
                requeued += 1
        cutoff = now - timedelta(days=IMPORT_RETENTION_DAYS)
        while True:  # every tenant's, also a deleted tenant's: the files are kept 30 days whoever owned them
            batch = list(rows.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:PURGE_BATCH])
            if not batch:
                break
            purged += rows.filter(pk__in=batch).delete()[0]
    if requeued or purged:
        logger.info("XLIFF imports queued again: %d; purged: %d", requeued, purged)
    return requeued, purged
