"""Console pages for knowledge bases. Thin: check access, call a selector or service, render.

EDIT_KNOWLEDGE opens the area; a localization editor limited to some locales and regions
(Membership.locales/regions) sees and acts on those only (`member_may_edit`); approving needs
REVIEW_KNOWLEDGE and goes through `translation_publish`, which enforces four-eyes review.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import HubError
from apps.knowledge.forms import SearchPreviewForm
from apps.knowledge.models import Article, KnowledgeBase, Translation
from apps.knowledge.selectors import (
    article_matrix,
    kb_coverage,
    kb_get,
    kb_list,
    knowledge_search,
    member_may_edit,
    review_queue,
)
from apps.knowledge.services import translation_publish
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
    page = Paginator(kb_list().order_by("name"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "knowledge/kb_list.html", {"page_obj": page})


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
    return render(request, "knowledge/kb_detail.html", context)


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_GET
def article_view(request: HttpRequest, tenant_slug: str, kb_id: Any, key: str) -> HttpResponse:
    """An article's texts; `?locale=&region=` (as in search citations) selects the one shown."""
    kb = _kb_or_404(kb_id)
    article = Article.objects.filter(kb=kb, key=key).first()
    if article is None:
        raise Http404
    locale = request.GET.get("locale", "")
    region = request.GET.get("region", "").upper()
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
    context = {"kb": kb, "article": article, "translations": translations, "selected": selected}
    return render(request, "knowledge/article.html", context)


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_GET
def review_queue_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    membership = _membership(request)
    queue = review_queue(
        locales=getattr(membership, "locales", None) or (),
        regions=getattr(membership, "regions", None) or (),
    )
    page = Paginator(queue, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page_obj": page,
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
