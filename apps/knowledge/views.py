"""Console pages for knowledge bases. Thin: check access, call a selector or service, render.

EDIT_KNOWLEDGE opens the area; a localization editor limited to some locales and regions
(Membership.locales/regions) sees and acts on those only (`member_may_edit`); approving and rejecting
need REVIEW_KNOWLEDGE and go through `translation_publish` (which enforces four-eyes review) and
`translation_reject`. The services check the same rules again for every other caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.core.errors import HubError, ValidationFailed
from apps.knowledge import insights_views
from apps.knowledge.diff import PhrasingsDiff, TextDiff, phrasings_diff, text_diff
from apps.knowledge.forms import ConnectionImportForm, EditorForm, RejectForm, SearchPreviewForm
from apps.knowledge.importing import SUPPORTED_KINDS, kb_import_connection_queue
from apps.knowledge.models import Article, KnowledgeBase, Revision, Status, Translation
from apps.knowledge.selectors import (
    EditorState,
    article_matrix,
    editor_state,
    kb_coverage,
    kb_get,
    kb_list,
    kbs_coverage,
    knowledge_search,
    member_may_edit,
    normalize_region,
    review_queue,
    user_labels,
)
from apps.knowledge.services import (
    translation_publish,
    translation_reject,
    translation_save,
    translation_submit,
)
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required

PAGE_SIZE = 25
SEARCH_HITS = 5


def _membership(request: HttpRequest) -> Any:
    return request.membership  # type: ignore[attr-defined]


def _may(request: HttpRequest, locale: str, region: str = "") -> bool:
    return member_may_edit(membership=_membership(request), locale=locale, region=region)


def _kb_or_404(kb_id: Any) -> KnowledgeBase:
    kb = kb_get(kb_id=kb_id)
    if kb is None:
        raise Http404
    return kb


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_GET
def kb_list_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Knowledge bases with a compact coverage per locale (two queries for the whole page)."""
    page = Paginator(kb_list().order_by("name"), PAGE_SIZE).get_page(request.GET.get("page"))
    coverage = kbs_coverage(kbs=list(page.object_list))
    rows = [
        (kb, [cov for cov in coverage.get(kb.pk, []) if _may(request, cov.locale)]) for kb in page.object_list
    ]
    return render(request, "knowledge/kb_list.html", {"page_obj": page, "rows": rows})


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_GET
def kb_detail_view(request: HttpRequest, tenant_slug: str, kb_id: Any) -> HttpResponse:
    """Coverage per locale (published / needs update / missing) and every article's status per locale."""
    kb = _kb_or_404(kb_id)
    locales = [locale for locale in kb.locales if _may(request, locale)]
    coverage = [cov for cov in kb_coverage(kb=kb) if cov.locale in locales]
    rows = [
        (
            article,
            [
                (locale, [t for t in by_locale.get(locale, []) if _may(request, t.locale, t.region)])
                for locale in locales
            ],
        )
        for article, by_locale in article_matrix(kb=kb)
    ]
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"kb": kb, "locales": locales, "coverage": coverage, "page_obj": page}
    context |= insights_views.kb_quality_context(request, kb)  # issue 21: per-article quality
    if roles.can(request.user, _membership(request), roles.MANAGE_KNOWLEDGE):
        context["import_form"] = ConnectionImportForm(connections=_import_connections())
    return render(request, "knowledge/kb_detail.html", context)


def _import_connections() -> list[tuple[str, str]]:
    """The tenant's enabled connections knowledge can be imported from, as form choices."""
    from apps.integrations.models import Connection

    found = Connection.objects.filter(enabled=True, kind__in=SUPPORTED_KINDS).order_by("name")
    return [(str(c.pk), f"{c.name} ({c.kind})") for c in found]


@tenant_permission_required(roles.MANAGE_KNOWLEDGE)
@require_POST
def kb_import_connection_view(request: HttpRequest, tenant_slug: str, kb_id: Any) -> HttpResponse:
    """Queue an import of the vendor's articles into this knowledge base (a Celery task)."""
    from apps.integrations.models import Connection

    kb = _kb_or_404(kb_id)
    form = ConnectionImportForm(request.POST, connections=_import_connections())
    if not form.is_valid():
        messages.error(request, _("Choose a ServiceNow or Salesforce connection to import from."))
        return redirect("knowledge:kb-detail", tenant_slug=tenant_slug, kb_id=kb.pk)
    connection = Connection.objects.get(pk=form.cleaned_data["connection"])
    kb_import_connection_queue(
        kb=kb, connection=connection, actor=request.user, publish=form.cleaned_data["publish"]
    )
    messages.success(
        request,
        _("Import from “%(name)s” queued: imported texts appear here (or in the review queue) shortly.")
        % {"name": connection.name},
    )
    return redirect("knowledge:kb-detail", tenant_slug=tenant_slug, kb_id=kb.pk)


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_GET
def article_view(request: HttpRequest, tenant_slug: str, kb_id: Any, key: str) -> HttpResponse:
    """An article's texts; `?locale=&region=` (as in search citations) selects the one shown."""
    kb = _kb_or_404(kb_id)
    article = Article.objects.filter(kb=kb, key=key).first()
    if article is None:
        raise Http404
    locale = request.GET.get("locale", "")
    region = normalize_region(request.GET.get("region"))
    if locale and not _may(request, locale, region):
        raise PermissionDenied
    translations = [
        t
        for t in Translation.objects.filter(article=article)
        .select_related("published_revision")
        .order_by("locale", "region")
        if _may(request, t.locale, t.region)
    ]
    wanted = (locale or kb.source_locale, region)
    selected = next((t for t in translations if (t.locale, t.region) == wanted), None)
    if selected is None and locale and region:
        selected = next((t for t in translations if (t.locale, t.region) == (locale, "")), None)
    if selected is None and translations:
        selected = translations[0]
    missing = [
        locale
        for locale in kb.locales
        if _may(request, locale) and not any(t.locale == locale and not t.region for t in translations)
    ]
    context = {
        "kb": kb,
        "article": article,
        "translations": translations,
        "selected": selected,
        "missing": missing,
    }
    context |= insights_views.article_quality_context(request, kb, article)  # issue 21
    return render(request, "knowledge/article.html", context)


def editor_url(*, tenant_slug: str, kb_id: Any, key: str, locale: str, region: str = "", **query: Any) -> str:
    url = reverse(
        "knowledge:editor", kwargs={"tenant_slug": tenant_slug, "kb_id": kb_id, "key": key, "locale": locale}
    )
    params = {"region": region, **query} if region else query
    return f"{url}?{urlencode(params)}" if params else url


@dataclass(frozen=True)
class Comparison:
    """What the editor's "Changes" card compares: the text's lines and its phrasings (a set)."""

    kind: str = ""  # "published" (live against the working copy), "revisions" (?from=&to=) or "" (nothing)
    diff: TextDiff | None = None
    phrasings: PhrasingsDiff | None = None
    old: Revision | None = None
    new: Revision | None = None
    error: str = ""


def _revision_diff(state: EditorState, params: Any) -> Comparison:
    """The comparison to show: `?from=&to=` revision numbers, else the working copy against what is live."""
    target = state.target
    if target is None:
        return Comparison()
    if "from" in params or "to" in params:
        by_number = {r.number: r for r in state.revisions}
        try:
            old, new = by_number[int(params.get("from", ""))], by_number[int(params.get("to", ""))]
        except (KeyError, ValueError):
            return Comparison(error=_("Choose two revisions of this text to compare."))
        return Comparison("revisions", *_diffs(old, new), old=old, new=new)
    live = target.published_revision
    if live is not None and _content(live) != _content(target):
        return Comparison("published", *_diffs(live, target), old=live)
    return Comparison()


def _content(text: Translation | Revision) -> tuple[str, str, list[str]]:
    return text.title, text.body, list(text.phrasings)


def _diffs(old: Translation | Revision, new: Translation | Revision) -> tuple[TextDiff, PhrasingsDiff]:
    return _diff(old.title, old.body, new.title, new.body), phrasings_diff(old.phrasings, new.phrasings)


def _diff(old_title: str, old_body: str, new_title: str, new_body: str) -> TextDiff:
    # The title is the first line of the compared text, so a retitled article shows as a change too.
    return text_diff(f"{old_title}\n\n{old_body}", f"{new_title}\n\n{new_body}")


def _source_diff(state: EditorState) -> tuple[TextDiff, PhrasingsDiff] | None:
    """What changed in the source text (and its phrasings) since this translation last followed it."""
    target, source = state.target, state.source
    if target is None or source is None or not target.needs_update or target.source_revision is None:
        return None
    return _diffs(target.source_revision, source)


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_http_methods(["GET", "POST"])
def editor_view(request: HttpRequest, tenant_slug: str, kb_id: Any, key: str, locale: str) -> HttpResponse:
    """Side-by-side editor: the source text on the left, this locale's (or region's) text on the right.

    Also creates a missing translation or regional variant (`?region=`). Saving writes a draft revision
    (`translation_save`); "Submit for review" saves, then asks for review (`translation_submit`).
    """
    kb = _kb_or_404(kb_id)
    article = Article.objects.filter(kb=kb, key=key).first()
    region = normalize_region(request.GET.get("region"))
    if article is None or locale not in kb.locales or (region and region not in kb.regions):
        raise Http404
    if not _may(request, locale, region):
        raise PermissionDenied
    state = editor_state(kb=kb, article=article, locale=locale, region=region)
    here = editor_url(tenant_slug=tenant_slug, kb_id=kb.pk, key=key, locale=locale, region=region)
    status = 200
    if request.method == "POST":
        form = EditorForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                saved = translation_save(
                    kb=kb,
                    key=article.key,
                    locale=locale,
                    region=region,
                    title=data["title"],
                    body=data["body"],
                    tags=data["tags"],
                    phrasings=data["phrasings"],
                    author=request.user,
                    note=data["note"],
                )
                if "submit" in request.POST and saved.status == Status.DRAFT:
                    translation_submit(translation=saved, actor=request.user)
            except ValidationFailed as exc:
                for name, errors in exc.errors.items():
                    form.add_error(name if name in form.fields else None, errors)
            except HubError as exc:
                messages.error(request, str(exc))
                return redirect(here)
            else:
                if "submit" in request.POST:
                    messages.success(request, _("The text is saved and waiting for review."))
                else:
                    messages.success(request, _("The draft is saved."))
                return redirect(here)
        status = 400
    else:
        start = state.target or state.base
        initial = (
            {
                "title": start.title,
                "body": start.body,
                "tags": ", ".join(start.tags),
                "phrasings": "\n".join(start.phrasings),
            }
            if start is not None
            else {}
        )
        form = EditorForm(initial=initial)
    form.fields["body"].widget.attrs["lang"] = locale
    form.fields["title"].widget.attrs["lang"] = locale
    form.fields["phrasings"].widget.attrs["lang"] = locale
    comparison = _revision_diff(state, request.GET)
    if comparison.error:
        status = 400
    source_diff = _source_diff(state)
    target = state.target
    membership = _membership(request)
    people = user_labels(
        ids=[r.author_id for r in state.revisions] + [target.rejected_by_id if target is not None else None]
    )
    context = {
        "kb": kb,
        "article": article,
        "locale": locale,
        "region": region,
        "state": state,
        "target": target,
        "form": form,
        "diff_kind": comparison.kind,
        "diff": comparison.diff,
        "phrasings_diff": comparison.phrasings,
        "diff_old": comparison.old,
        "diff_new": comparison.new,
        "diff_error": comparison.error,
        "source_diff": source_diff[0] if source_diff else None,
        "source_phrasings_diff": source_diff[1] if source_diff else None,
        "revisions": [(r, people.get(r.author_id or 0, "")) for r in state.revisions],
        "rejected_by": people.get(target.rejected_by_id or 0, "") if target is not None else "",
        "other_texts": _editor_links(request, kb, article, state, locale, region),
        "new_variants": [
            (reg, editor_url(tenant_slug=tenant_slug, kb_id=kb.pk, key=key, locale=locale, region=reg))
            for reg in kb.regions
            if not region
            and _may(request, locale, reg)
            and not any((t.locale, t.region) == (locale, reg) for t in state.existing)
        ],
        "can_review": roles.can(request.user, membership, roles.REVIEW_KNOWLEDGE),
        "reject_form": RejectForm(),
    }
    return render(request, "knowledge/editor.html", context, status=status)


def _editor_links(
    request: HttpRequest, kb: KnowledgeBase, article: Article, state: EditorState, locale: str, region: str
) -> list[dict[str, Any]]:
    """Every locale (and region) this member may edit, existing or still missing, for the editor's tabs."""
    existing = {(t.locale, t.region): t for t in state.existing}
    links = []
    for loc in kb.locales:
        for reg in ["", *kb.regions]:
            text = existing.get((loc, reg))
            if (text is None and reg) or not _may(request, loc, reg):
                continue  # a missing variant is offered from its locale's page, not as a tab of its own
            links.append(
                {
                    "locale": loc,
                    "region": reg,
                    "text": text,
                    "current": (loc, reg) == (locale, region),
                    "url": editor_url(
                        tenant_slug=request.tenant.slug,  # type: ignore[attr-defined]
                        kb_id=kb.pk,
                        key=article.key,
                        locale=loc,
                        region=reg,
                    ),
                }
            )
    return links


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_GET
def review_queue_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    membership = _membership(request)
    queue = review_queue(
        locales=getattr(membership, "locales", None) or (),
        regions=getattr(membership, "regions", None) or (),
    )
    page = Paginator(queue, PAGE_SIZE).get_page(request.GET.get("page"))
    # The live revisions of the page in one query, so each row can say which phrasings the review changes.
    texts: list[Translation] = list(page.object_list)
    prefetch_related_objects(texts, "published_revision")
    context = {
        "page_obj": page,
        "rows": [
            (t, phrasings_diff(t.published_revision.phrasings if t.published_revision else [], t.phrasings))
            for t in texts
        ],
        "can_review": roles.can(request.user, membership, roles.REVIEW_KNOWLEDGE),
    }
    return render(request, "knowledge/review_queue.html", context)


@tenant_permission_required(roles.REVIEW_KNOWLEDGE)
@require_POST
def review_approve_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    translation = Translation.objects.select_related("article__kb").filter(pk=pk).first()
    if translation is None:
        raise Http404
    if not _may(request, translation.locale, translation.region):
        raise PermissionDenied
    try:
        translation_publish(translation=translation, actor=request.user, request=request)
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            _("“%(title)s” (%(locale)s) is published.")
            % {"title": translation.title, "locale": translation.locale},
        )
    return redirect("knowledge:review-queue", tenant_slug=tenant_slug)


@tenant_permission_required(roles.REVIEW_KNOWLEDGE)
@require_POST
def review_reject_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    """Send a text back to draft with a reason its editors see in the editor."""
    translation = Translation.objects.select_related("article__kb").filter(pk=pk).first()
    if translation is None:
        raise Http404
    if not _may(request, translation.locale, translation.region):
        raise PermissionDenied
    form = RejectForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(m) for errors in form.errors.values() for m in errors))
        return redirect("knowledge:review-queue", tenant_slug=tenant_slug)
    try:
        translation_reject(
            translation=translation, actor=request.user, reason=form.cleaned_data["reason"], request=request
        )
    except ValidationFailed as exc:
        messages.error(request, " ".join(m for errors in exc.errors.values() for m in errors) or str(exc))
    except HubError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            _("“%(title)s” (%(locale)s) went back to its editors.")
            % {"title": translation.title, "locale": translation.locale},
        )
    return redirect("knowledge:review-queue", tenant_slug=tenant_slug)


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_GET
def search_preview_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """What the chat would answer from: `knowledge_search` hits with their citations."""
    tenant = request.tenant  # type: ignore[attr-defined]
    form = SearchPreviewForm(request.GET or None, initial={"locale": tenant.default_locale})
    hits: list[Any] = []
    hidden = 0
    searched = form.is_valid()
    if searched:
        data = form.cleaned_data
        found = knowledge_search(
            tenant=tenant,
            query=data["question"],
            locale=data["locale"],
            region=data["region"] or None,
            k=SEARCH_HITS,
        )
        hits = [hit for hit in found if _may(request, hit.locale, hit.region or "")]
        hidden = len(found) - len(hits)
    context = {"form": form, "hits": hits, "hidden": hidden, "searched": searched}
    return render(request, "knowledge/search_preview.html", context, status=400 if form.errors else 200)
