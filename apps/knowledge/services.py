"""Writing knowledge: bases, translations and their workflow (draft → in review → published → archived).

Every save of a translation or regional variant writes a Revision. Publishing is audited and queues the
indexing task on commit; archiving removes the text from search at once (in the same transaction).

Writes check the actor here, not only in views (the API, commands and connectors call these too): the
role must grant the permission (apps.tenants.roles) and a localization editor limited to some locales
and regions may touch only those. `actor=None` is the system itself (seeding, a command line import).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.core.context import as_ref, current_tenant, tenant_context
from apps.core.errors import Conflict, ValidationFailed
from apps.knowledge.content import markdown_problems
from apps.knowledge.dispatch import INDEX_TASK, REINDEX_TASK, knowledge_task
from apps.knowledge.models import (
    PHRASING_MAX_CHARS,
    PHRASINGS_MAX,
    Article,
    Chunk,
    KnowledgeBase,
    Revision,
    Status,
    Translation,
    key_validator,
    region_validator,
)
from apps.knowledge.selectors import member_may_edit, normalize_region
from apps.knowledge.version import knowledge_version_bump
from apps.tenants import roles
from apps.tenants.models import Membership, locale_validator

REASON_MAX = 2000


def _validate(validator: Any, value: str, field: str, errors: dict[str, list[str]]) -> None:
    try:
        validator(value)
    except ValidationError as exc:
        errors.setdefault(field, []).extend(exc.messages)


def _clean_regions(regions: Iterable[str], errors: dict[str, list[str]]) -> list[str]:
    """The hub's region codes, lower-cased ("EU" → "eu"); a code this deployment does not run is refused."""
    cleaned = list(dict.fromkeys(normalize_region(r) for r in regions if r and r.strip()))
    for region in cleaned:
        before = len(errors.get("regions", []))
        _validate(region_validator, region, "regions", errors)
        if len(errors.get("regions", [])) == before and region not in settings.HUB_REGIONS:
            errors.setdefault("regions", []).append(
                _("Unknown region %(region)s: use one of %(regions)s.")
                % {"region": region, "regions": ", ".join(settings.HUB_REGIONS)}
            )
    return cleaned


def _actor_id(actor: Any) -> int | None:
    return getattr(actor, "pk", None) if actor is not None else None


def _membership_of(actor: Any) -> Membership | None:
    """The actor's membership in the current tenant, looked up once per actor object (a bulk import
    saves thousands of texts as one actor; a request's user lives as long as the request)."""
    if getattr(actor, "pk", None) is None:
        return None
    tenant_id = current_tenant().id
    memo: dict[int, Membership | None] | None = getattr(actor, "_knowledge_memberships", None)
    if memo is None:
        memo = {}
        actor._knowledge_memberships = memo
    if tenant_id not in memo:
        memo[tenant_id] = Membership.objects.filter(user_id=actor.pk, tenant_id=tenant_id).first()
    return memo[tenant_id]


def check_allowed(*, actor: Any, perm: str, locale: str | None = None, region: str = "") -> None:
    """Refuse (PermissionDenied) unless `actor` holds `perm` here and, if given, may edit `locale`/`region`.

    `actor=None` is the system (seeding, command line imports) and may do anything.
    """
    if actor is None:
        return
    membership = _membership_of(actor)
    if not roles.can(actor, membership, perm):
        raise PermissionDenied(_("Your role in this tenant does not allow this."))
    if locale is not None and not member_may_edit(membership=membership, locale=locale, region=region):
        raise PermissionDenied(
            _("You may not edit texts in %(locale)s%(region)s.")
            % {"locale": locale, "region": f"/{region}" if region else ""}
        )


# --- knowledge bases -----------------------------------------------------------------------------------
def kb_create(
    *,
    tenant: Any,
    name: str,
    source_locale: str,
    enabled_locales: Sequence[str] = (),
    regions: Sequence[str] = (),
    four_eyes: bool = True,
    actor: Any = None,
) -> KnowledgeBase:
    """Create a knowledge base; its vectors start with the configured embedding model."""
    from apps.knowledge.embeddings import get_provider

    with tenant_context(tenant):
        check_allowed(actor=actor, perm=roles.MANAGE_KNOWLEDGE)
    errors: dict[str, list[str]] = {}
    name = name.strip()
    if not name:
        errors["name"] = [_("Enter a name.")]
    _validate(locale_validator, source_locale, "source_locale", errors)
    locales = list(dict.fromkeys([source_locale, *enabled_locales]))
    for locale in locales:
        _validate(locale_validator, locale, "enabled_locales", errors)
    cleaned_regions = _clean_regions(regions, errors)
    with tenant_context(tenant):
        if name and KnowledgeBase.objects.filter(name=name).exists():
            errors.setdefault("name", []).append(_("A knowledge base with this name already exists."))
        if errors:
            raise ValidationFailed(_("The knowledge base was not created."), errors)
        with transaction.atomic(using=current_tenant().db_alias):
            kb = KnowledgeBase(
                name=name,
                source_locale=source_locale,
                enabled_locales=locales,
                regions=cleaned_regions,
                four_eyes=four_eyes,
                embedding_model=get_provider().model_id,
            )
            kb.save()
            audit_record(
                "knowledge.kb_created",
                tenant=tenant,
                actor=actor,
                target=kb,
                changes={"source_locale": source_locale, "locales": locales, "regions": cleaned_regions},
            )
    knowledge_version_bump(tenant_id=as_ref(tenant).id)  # search's cached list of knowledge bases
    return kb


def kb_update(
    *,
    kb: KnowledgeBase,
    enabled_locales: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
    four_eyes: bool | None = None,
    helpcenter_enabled: bool | None = None,
    helpcenter_handle: str | None = None,
    actor: Any = None,
) -> KnowledgeBase:
    """Change the locales, regions, review rule or public help center of a knowledge base (the source locale
    stays fixed). A help center change bumps the knowledge version: citation URLs and cached pages follow."""
    check_allowed(actor=actor, perm=roles.MANAGE_KNOWLEDGE)
    errors: dict[str, list[str]] = {}
    changes: dict[str, Any] = {}
    if enabled_locales is not None:
        locales = list(dict.fromkeys([kb.source_locale, *enabled_locales]))
        for locale in locales:
            _validate(locale_validator, locale, "enabled_locales", errors)
        changes["enabled_locales"] = kb.enabled_locales = locales
    if regions is not None:
        changes["regions"] = kb.regions = _clean_regions(regions, errors)
    if four_eyes is not None:
        changes["four_eyes"] = kb.four_eyes = four_eyes
    enabled = kb.helpcenter_enabled if helpcenter_enabled is None else helpcenter_enabled
    handle = kb.helpcenter_handle
    if helpcenter_handle is not None:
        handle = _clean_handle(kb=kb, handle=helpcenter_handle, errors=errors)
    if enabled and not handle and "helpcenter_handle" not in errors:
        handle = _clean_handle(kb=kb, handle=slugify(kb.name)[:50] or "help", errors=errors)
    public_changed = (kb.helpcenter_enabled, kb.helpcenter_handle) != (enabled, handle)
    if public_changed:
        changes["helpcenter"] = {"enabled": enabled, "handle": handle}
    if errors:
        raise ValidationFailed(_("The knowledge base was not changed."), errors)
    kb.helpcenter_enabled, kb.helpcenter_handle = enabled, handle
    with transaction.atomic(using=current_tenant().db_alias):
        kb.save()
        audit_record("knowledge.kb_updated", tenant=current_tenant(), actor=actor, target=kb, changes=changes)
    if public_changed:
        knowledge_version_bump(tenant_id=current_tenant().id)
    return kb


def _clean_handle(*, kb: KnowledgeBase, handle: str, errors: dict[str, list[str]]) -> str:
    """A help center handle: a slug, unique among the tenant's knowledge bases."""
    handle = (handle or "").strip().lower()
    if not handle:
        return ""
    _validate(validate_slug, handle, "helpcenter_handle", errors)
    if len(handle) > 50:
        errors.setdefault("helpcenter_handle", []).append(_("Use at most 50 characters."))
    elif KnowledgeBase.objects.filter(helpcenter_handle=handle).exclude(pk=kb.pk).exists():
        errors.setdefault("helpcenter_handle", []).append(
            _("Another knowledge base already uses this address.")
        )
    return handle


# --- translations and regional variants ------------------------------------------------------------------
def _source_translation(*, article: Article, source_locale: str, region: str) -> Translation | None:
    """The source text a translation follows: the same region's source variant, else the generic one."""
    rows = {t.region: t for t in Translation.objects.filter(article=article, locale=source_locale)}
    return rows.get(region) or rows.get("")


def _latest_revision(translation: Translation | None) -> Revision | None:
    if translation is None:
        return None
    return translation.revisions.order_by("-number").first()


def translation_save(
    *,
    kb: KnowledgeBase,
    key: str,
    locale: str,
    region: str = "",
    title: str,
    body: str,
    tags: Sequence[str] = (),
    phrasings: Sequence[str] | None = None,
    author: Any = None,
    note: str = "",
) -> Translation:
    """Create or edit the text of article `key` in `locale` (and `region` for a regional variant).

    `phrasings`: other ways customers ask what the text answers (None keeps the working copy's); they are
    part of the text: reviewed, published and followed by translations like the body.

    Writes a new Revision when anything changed. A published or archived text goes back to draft (the
    published revision stays live until the new one is approved). Changing the source-locale text marks
    the article's other translations of that region as needing an update. `author` is the acting user.
    """
    check_allowed(actor=author, perm=roles.EDIT_KNOWLEDGE)
    errors: dict[str, list[str]] = {}
    region = normalize_region(region)
    title = title.strip()
    tags = [t.strip() for t in tags if t and t.strip()]
    cleaned = phrasings_clean(phrasings or (), errors) if phrasings is not None else None
    _validate(key_validator, key, "key", errors)
    _validate(locale_validator, locale, "locale", errors)
    if not errors.get("locale") and locale not in kb.locales:
        errors["locale"] = [_("This knowledge base does not use the locale %(locale)s.") % {"locale": locale}]
    if region:
        _validate(region_validator, region, "region", errors)
        if not errors.get("region") and region not in kb.regions:
            errors["region"] = [
                _("This knowledge base does not serve the region %(region)s.") % {"region": region}
            ]
    if not title:
        errors["title"] = [_("Enter a title.")]
    elif len(title) > 300:
        errors["title"] = [_("Use at most 300 characters.")]
    if problems := markdown_problems(body):
        # Stored bodies hold no live markup (apps/knowledge/content.py): say what to change, not just "no".
        if any(p.startswith("html:") for p in problems):
            errors["body"] = [
                _("Write Markdown, not HTML: remove %(markup)s (to show it as text, put it in `backticks`).")
                % {"markup": next(p[5:] for p in problems if p.startswith("html:"))}
            ]
        else:
            errors["body"] = [
                _("Links may only use http, https or mailto, not %(scheme)s.")
                % {"scheme": next(p[4:] for p in problems if p.startswith("url:"))}
            ]
    if errors:
        raise ValidationFailed(_("The text was not saved."), errors)
    check_allowed(actor=author, perm=roles.EDIT_KNOWLEDGE, locale=locale, region=region)

    with transaction.atomic(using=current_tenant().db_alias):
        article, _created = Article.objects.get_or_create(kb=kb, key=key)
        translation = (
            Translation.objects.select_for_update()
            .filter(article=article, locale=locale, region=region)
            .first()
        )
        if translation is None:
            translation = Translation(article=article, locale=locale, region=region, title=title, body=body)
        new_phrasings = list(translation.phrasings) if cleaned is None else cleaned
        if translation.pk is not None and (
            translation.title,
            translation.body,
            list(translation.tags),
            list(translation.phrasings),
        ) == (title, body, tags, new_phrasings):
            return translation  # nothing changed: no revision, no workflow change
        text_changed = translation.pk is None or (
            translation.title,
            translation.body,
            list(translation.phrasings),
        ) != (title, body, new_phrasings)
        translation.title, translation.body, translation.tags = title, body, tags
        translation.phrasings = new_phrasings
        if translation.status in (Status.PUBLISHED, Status.ARCHIVED):
            translation.status = Status.DRAFT
        is_source = locale == kb.source_locale
        if not is_source:
            source = _source_translation(article=article, source_locale=kb.source_locale, region=region)
            translation.source_revision = _latest_revision(source)
            translation.needs_update = False
        translation.save()
        number = (translation.revisions.aggregate(n=Max("number"))["n"] or 0) + 1
        Revision(
            translation=translation,
            number=number,
            title=title,
            body=body,
            tags=tags,
            phrasings=new_phrasings,
            author_id=_actor_id(author),
            note=note[:200],
        ).save()
        if is_source and text_changed and number > 1:
            followers = Translation.objects.filter(article=article).exclude(locale=locale)
            # A generic source change concerns every follower; a regional one only that region's variants.
            if region:
                followers = followers.filter(region=region)
            followers.update(needs_update=True, updated_at=timezone.now())
    return translation


def phrasings_clean(values: Iterable[Any], errors: dict[str, list[str]]) -> list[str]:
    """Phrasings as stored: plain one-line text, trimmed, duplicates (ignoring case) and blanks dropped.

    Problems go to `errors["phrasings"]`; a phrasing is search input only, so markup is refused, not escaped.
    """
    cleaned: list[str] = []
    seen: set[str] = set()
    problems: list[str] = []
    for raw in values:
        if not isinstance(raw, str):
            problems.append(_("Each phrasing must be text."))
            continue
        text = " ".join(raw.split())
        if not text or text.casefold() in seen:
            continue
        if len(text) > PHRASING_MAX_CHARS:
            problems.append(
                _("“%(start)s…” is too long: use at most %(max)d characters.")
                % {"start": text[:30], "max": PHRASING_MAX_CHARS}
            )
        elif markdown_problems(text):
            problems.append(_("“%(start)s…”: write plain text, no markup.") % {"start": text[:30]})
        else:
            seen.add(text.casefold())
            cleaned.append(text)
    if len(cleaned) > PHRASINGS_MAX:
        problems.append(_("Use at most %(max)d phrasings per text.") % {"max": PHRASINGS_MAX})
    if problems:
        errors["phrasings"] = problems
    return cleaned


def translation_submit(*, translation: Translation, actor: Any = None) -> Translation:
    """Ask for review of a draft; a previous rejection's reason has been answered and is cleared."""
    check_allowed(
        actor=actor, perm=roles.EDIT_KNOWLEDGE, locale=translation.locale, region=translation.region
    )
    if translation.status != Status.DRAFT:
        raise Conflict(_("Only a draft can be submitted for review."))
    translation.status = Status.IN_REVIEW
    translation.rejection_reason, translation.rejected_by_id, translation.rejected_at = "", None, None
    translation.save(
        update_fields=["status", "rejection_reason", "rejected_by_id", "rejected_at", "updated_at"]
    )
    return translation


def translation_reject(
    *, translation: Translation, actor: Any, reason: str, request: Any = None
) -> Translation:
    """Send a text in review back to draft with the reviewer's reason, which its editors see in the editor.

    Audited like publishing. The published revision (if any) stays live.
    """
    check_allowed(
        actor=actor, perm=roles.REVIEW_KNOWLEDGE, locale=translation.locale, region=translation.region
    )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(
            _("The text was not rejected."),
            {"reason": [_("Say what has to change before it can be published.")]},
        )
    if len(reason) > REASON_MAX:
        raise ValidationFailed(
            _("The text was not rejected."),
            {"reason": [_("Use at most %(max)d characters.") % {"max": REASON_MAX}]},
        )
    if translation.status != Status.IN_REVIEW:
        raise Conflict(_("Only a text in review can be rejected."))
    kb = translation.article.kb
    revision = _latest_revision(translation)
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        translation.status = Status.DRAFT
        translation.rejection_reason = reason
        translation.rejected_by_id = _actor_id(actor)
        translation.rejected_at = timezone.now()
        translation.save(
            update_fields=["status", "rejection_reason", "rejected_by_id", "rejected_at", "updated_at"]
        )
        audit_record(
            "knowledge.rejected",
            tenant=tenant,
            actor=actor,
            target=translation,
            target_label=_target_label(kb, translation),
            changes={"revision": revision.number if revision else None, "kb": str(kb.pk), "reason": reason},
            request=request,
        )
    return translation


def _target_label(kb: KnowledgeBase, translation: Translation) -> str:
    region = f"/{translation.region}" if translation.region else ""
    return f"{kb.name}: {translation.article.key} ({translation.locale}{region})"


def translation_publish(*, translation: Translation, actor: Any, request: Any = None) -> Translation:
    """Approve and publish the latest revision; queue its indexing once the transaction commits.

    With four-eyes review the text must be in review and the approver must not be its last author.
    """
    check_allowed(
        actor=actor, perm=roles.REVIEW_KNOWLEDGE, locale=translation.locale, region=translation.region
    )
    kb = translation.article.kb
    revision = _latest_revision(translation)
    if revision is None:
        raise Conflict(_("There is no text to publish."))
    if translation.status == Status.PUBLISHED and translation.published_revision_id == revision.pk:
        raise Conflict(_("This text is already published."))
    if kb.four_eyes:
        if translation.status != Status.IN_REVIEW:
            raise Conflict(_("This knowledge base requires review: submit the text for review first."))
        if revision.author_id is not None and revision.author_id == _actor_id(actor):
            raise Conflict(
                _("Four-eyes review: you wrote the latest change, so someone else has to approve it.")
            )
    elif translation.status not in (Status.DRAFT, Status.IN_REVIEW):
        raise Conflict(_("Only a draft or a text in review can be published."))
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        translation.status = Status.PUBLISHED
        translation.published_revision = revision
        translation.published_at = timezone.now()
        translation.save(update_fields=["status", "published_revision", "published_at", "updated_at"])
        audit_record(
            "knowledge.published",
            tenant=tenant,
            actor=actor,
            target=translation,
            target_label=_target_label(kb, translation),
            changes={"revision": revision.number, "kb": str(kb.pk), "title": revision.title},
            request=request,
        )
        index_on_commit(translation_ids=[translation.pk])
    return translation


def translation_archive(*, translation: Translation, actor: Any = None, request: Any = None) -> Translation:
    """Take a text out of service: it leaves search in this transaction, and its history stays."""
    check_allowed(
        actor=actor, perm=roles.REVIEW_KNOWLEDGE, locale=translation.locale, region=translation.region
    )
    if translation.status == Status.ARCHIVED:
        raise Conflict(_("This text is already archived."))
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        translation.status = Status.ARCHIVED
        translation.published_revision = None
        translation.published_at = None
        translation.save(update_fields=["status", "published_revision", "published_at", "updated_at"])
        Chunk.objects.filter(translation=translation).delete()
        audit_record("knowledge.archived", tenant=tenant, actor=actor, target=translation, request=request)
    knowledge_version_bump(tenant_id=tenant.id)  # cached answers and help center pages showed this text
    return translation


def _on_commit(func: Any, *, using: str) -> None:
    """Queue work for after the commit (tests swap this to run it at once, inside their transaction).

    `robust`: a broker outage after the commit is logged, never turned into a server error for a change that
    is already stored (issue 15).
    """
    transaction.on_commit(func, using=using, robust=True)


def index_on_commit(*, translation_ids: list[int]) -> None:
    """Queue indexing of these translations after the current transaction commits."""
    tenant = current_tenant()
    _on_commit(
        lambda: knowledge_task(INDEX_TASK).delay(tenant_id=tenant.id, translation_ids=translation_ids),
        using=tenant.db_alias,
    )


def kb_reindex_start(*, kb: KnowledgeBase, actor: Any = None, model_id: str = "") -> bool:
    """Start building vectors of the configured model (or of `model_id`, any configured provider's: the
    current one or one in HUB_EMBEDDING_PREVIOUS_PROVIDERS, so one knowledge base can move to another model
    alone) for `kb` in the background; False if current. Search keeps the old vectors until it is done."""
    from apps.knowledge.embeddings import get_provider, provider_for_model

    check_allowed(actor=actor, perm=roles.MANAGE_KNOWLEDGE)
    model_id = provider_for_model(model_id).model_id if model_id else get_provider().model_id
    if kb.embedding_model == model_id:
        return False
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        kb.reindex_model = model_id
        kb.save(update_fields=["reindex_model", "updated_at"])
        audit_record(
            "knowledge.reindex_started",
            tenant=tenant,
            actor=actor,
            target=kb,
            changes={"from": kb.embedding_model, "to": model_id},
        )
        kb_id = str(kb.pk)
        _on_commit(
            lambda: knowledge_task(REINDEX_TASK).delay(tenant_id=tenant.id, kb_id=kb_id),
            using=tenant.db_alias,
        )
    return True


# --- import ------------------------------------------------------------------------------------------------
IMPORT_FIELDS = ("key", "locale", "region", "title", "body", "status", "phrasings")


@dataclass
class ImportResult:
    saved: int = 0
    published: int = 0
    translation_ids: list[int] = field(default_factory=list)


def _parse_line(raw: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        row = json.loads(raw)
    except ValueError as exc:
        return None, _("not valid JSON (%(error)s)") % {"error": str(exc)}
    if not isinstance(row, dict):
        return None, _("expected a JSON object")
    missing = [name for name in ("key", "locale", "title", "body") if name not in row]
    if missing:
        return None, _("missing %(fields)s") % {"fields": ", ".join(missing)}
    unknown = sorted(set(row) - set(IMPORT_FIELDS))
    if unknown:
        return None, _("unknown fields %(fields)s") % {"fields": ", ".join(unknown)}
    for name in ("key", "locale", "title", "body"):
        if not isinstance(row[name], str):
            return None, _("%(field)s must be a string") % {"field": name}
    if row.get("region") is not None and not isinstance(row["region"], str):
        return None, _("region must be a string or null")
    if row.get("phrasings") is not None and not isinstance(row["phrasings"], list):
        return None, _("phrasings must be a list of strings")
    status = row.get("status") or Status.DRAFT
    if status not in Status.values:
        return None, _("unknown status %(status)r") % {"status": status}
    row["status"] = status
    return row, None


def kb_import(
    *, kb: KnowledgeBase, lines: Iterable[str], actor: Any = None, index_now: bool = False
) -> ImportResult:
    """Import JSON lines ({key, locale, region, title, body, status}) in one transaction: all or nothing.

    Errors are reported per line number. Published lines are published directly (an import is an
    administrator's bulk load, not an edit to review) and audited each; indexing is queued on commit,
    or done at once with `index_now` (seeding, where no worker may be running).
    """
    check_allowed(actor=actor, perm=roles.MANAGE_KNOWLEDGE)
    errors: list[str] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        row, error = _parse_line(raw)
        if error:
            errors.append(_("line %(line)d: %(error)s") % {"line": number, "error": error})
        elif row is not None:
            rows.append((number, row))
    if errors:
        raise ValidationFailed(_("Nothing was imported."), {"lines": errors})
    result = ImportResult()
    tenant = current_tenant()
    with transaction.atomic(using=tenant.db_alias):
        for number, row in rows:
            try:
                translation = translation_save(
                    kb=kb,
                    key=row["key"],
                    locale=row["locale"],
                    region=row.get("region") or "",
                    title=row["title"],
                    body=row["body"],
                    phrasings=row.get("phrasings"),
                    author=actor,
                    note="import",
                )
            except ValidationFailed as exc:
                for name, messages in exc.errors.items():
                    for message in messages:
                        errors.append(
                            _("line %(line)d: %(field)s: %(error)s")
                            % {"line": number, "field": name, "error": message}
                        )
                continue
            result.saved += 1
            result.translation_ids.append(translation.pk)
            if _apply_import_status(translation=translation, status=row["status"], actor=actor):
                result.published += 1
        if errors:
            raise ValidationFailed(_("Nothing was imported."), {"lines": errors})
        audit_record(
            "knowledge.imported",
            tenant=tenant,
            actor=actor,
            target=kb,
            changes={"lines": len(rows), "published": result.published},
        )
        if not index_now:
            index_on_commit(translation_ids=result.translation_ids)
    if index_now:
        from apps.knowledge.indexing import translations_index

        translations_index(translation_ids=result.translation_ids)
    return result


def _apply_import_status(*, translation: Translation, status: str, actor: Any) -> bool:
    """Bring an imported text to the status its line asks for; True when this published it."""
    if status == Status.PUBLISHED:
        revision = _latest_revision(translation)
        if translation.status == Status.PUBLISHED and translation.published_revision_id == revision.pk:  # type: ignore[union-attr]
            return False
        translation.status = Status.PUBLISHED
        translation.published_revision = revision
        translation.published_at = timezone.now()
        translation.save(update_fields=["status", "published_revision", "published_at", "updated_at"])
        audit_record(
            "knowledge.published",
            tenant=current_tenant(),
            actor=actor,
            target=translation,
            changes={"revision": revision.number if revision else None, "via": "import"},
        )
        return True
    if status == Status.IN_REVIEW and translation.status == Status.DRAFT:
        translation_submit(translation=translation, actor=actor)
    elif status == Status.ARCHIVED and translation.status != Status.ARCHIVED:
        translation_archive(translation=translation, actor=actor)
    return False
