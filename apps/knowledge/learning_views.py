"""Console page "Unanswered questions" of a knowledge base: the learning loop (apps/knowledge/learning.py).

Thin: the list comes from `unanswered_questions`, attaching and dismissing from the services there, which
check the actor's locale and region again. Anyone who may edit knowledge opens it; a localization editor
sees (and acts on) only the locales and regions they may edit. A bad or unknown article is a form error
on the page (400), never a server error.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import ValidationFailed
from apps.knowledge.embeddings import EmbeddingError, get_provider
from apps.knowledge.learning import (
    SOURCE_FALLBACK,
    SOURCE_NEGATIVE,
    QuestionGroup,
    article_create_from_questions,
    article_key_proposals,
    kb_locale,
    kb_region,
    phrasing_attach,
    phrasing_target,
    questions_dismiss,
    unanswered_questions,
)
from apps.knowledge.models import Article, KnowledgeBase
from apps.knowledge.selectors import kb_get, knowledge_search, member_may_edit, normalize_region
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required

GROUPS_PER_PAGE = 10
SUGGESTIONS = 3
PICKER_ARTICLES = 2000  # article keys offered by the picker (a datalist); more is typed, not picked
GENERIC = "-"  # the region filter's value for the generic texts ("" = every region)
FILTERS = ("locale", "region", "source", "page")
EXAMPLES_POSTED = 10  # phrasings "Create article from this" takes from a post (the page sends the examples)


class FilterForm(forms.Form):
    locale = forms.ChoiceField(label=gettext_lazy("Locale"), required=False)
    region = forms.ChoiceField(label=gettext_lazy("Region"), required=False)
    source = forms.ChoiceField(
        label=gettext_lazy("Why it is listed"),
        required=False,
        choices=[
            ("", gettext_lazy("Any")),
            (SOURCE_FALLBACK, gettext_lazy("No answer found")),
            (SOURCE_NEGATIVE, gettext_lazy("Answer rated down")),
        ],
    )

    def __init__(self, *args: Any, locales: list[str], regions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        locale_field = cast(forms.ChoiceField, self.fields["locale"])
        region_field = cast(forms.ChoiceField, self.fields["region"])
        locale_field.choices = [("", _("Any")), *[(loc, loc) for loc in locales]]
        region_field.choices = [
            ("", _("Any")),
            (GENERIC, _("Generic texts")),
            *[(reg, reg.upper()) for reg in regions],
        ]


class GroupForm(forms.Form):
    """What the buttons of one group post: its questions (hashes), locale and region, where to go back."""

    group = forms.CharField(max_length=64)
    questions = forms.CharField(max_length=65 * 5000)
    locale = forms.CharField(max_length=16)
    region = forms.CharField(max_length=16, required=False)
    back = forms.CharField(max_length=500, required=False)

    def clean_questions(self) -> list[str]:
        return [h for h in self.cleaned_data["questions"].split(",") if h]


class AttachForm(GroupForm):
    text = forms.CharField(label=gettext_lazy("Question"), max_length=1000)
    # A suggestion's button posts its key as `article`; the picker's button leaves it out and `other` counts.
    article = forms.CharField(max_length=100, required=False)
    other = forms.CharField(label=gettext_lazy("Other article"), max_length=100, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        data["article"] = (data.get("article") or data.get("other") or "").strip()
        if not data["article"]:
            self.add_error("other", _("Choose the article this question belongs to."))
        return data


class CreateForm(GroupForm):
    """What "Create article from this" posts: the proposed key and title (editable) and the examples."""

    key = forms.CharField(label=gettext_lazy("Article key"), max_length=100)
    title = forms.CharField(label=gettext_lazy("Title"), max_length=300)


def _membership(request: HttpRequest) -> Any:
    return request.membership  # type: ignore[attr-defined]


def _kb_or_404(kb_id: Any) -> KnowledgeBase:
    kb = kb_get(kb_id=kb_id)
    if kb is None:
        raise Http404
    return kb


def _list_url(request: HttpRequest, kb: KnowledgeBase, query: str = "") -> str:
    url = reverse(
        "knowledge:learning",
        kwargs={"tenant_slug": request.tenant.slug, "kb_id": kb.pk},  # type: ignore[attr-defined]
    )
    return f"{url}?{query}" if query else url


def _back_query(raw: str) -> str:
    """The list's filters to return to, from a posted query string (nothing else is kept)."""
    params = QueryDict(raw[:500])
    return urlencode([(k, params[k][:20]) for k in FILTERS if params.get(k)])


def _page_context(
    request: HttpRequest, kb: KnowledgeBase, params: Any, errors: dict[str, list[str]] | None = None
) -> tuple[dict[str, Any], int]:
    membership = _membership(request)
    locales = [loc for loc in kb.locales if member_may_edit(membership=membership, locale=loc)]
    limited = [normalize_region(r) for r in getattr(membership, "regions", None) or []]
    regions = [r for r in kb.regions if not limited or r in limited]
    form = FilterForm(params or None, locales=locales, regions=regions)
    data = form.cleaned_data if form.is_valid() else {}
    region = data.get("region") or ""
    groups = unanswered_questions(
        tenant=request.tenant,  # type: ignore[attr-defined]
        kb=kb,
        locale=data.get("locale") or "",
        region=None if not region else ("" if region == GENERIC else region),
        source=data.get("source") or "",
        membership=membership,
    )
    page = Paginator(groups, GROUPS_PER_PAGE).get_page(params.get("page"))
    same_model = kb.embedding_model == get_provider().model_id
    keys = article_key_proposals(kb=kb, texts=[group.question for group in page.object_list])
    rows = [
        {
            "group": group,
            "suggestions": _suggestions(request, kb, group, same_model),
            "form_questions": ",".join(group.hashes),
            "errors": (errors or {}).get(group.key, []),
            "new_key": key,
        }
        for group, key in zip(page.object_list, keys, strict=True)
    ]
    query = _back_query(params.urlencode()) if hasattr(params, "urlencode") else ""
    context = {
        "kb": kb,
        "form": form,
        "page_obj": page,
        "rows": rows,
        "back": query,
        "filtered": any(data.get(k) for k in ("locale", "region", "source")),
        "places": _places(groups),
        "articles": list(
            Article.objects.filter(kb=kb).order_by("key").values_list("key", flat=True)[:PICKER_ARTICLES]
        ),
    }
    return context, 400 if form.errors else 200


def _places(groups: list[QuestionGroup]) -> list[dict[str, Any]]:
    """Per locale and region of the listed groups: how many groups and questions (most asked first)."""
    places: dict[tuple[str, str], dict[str, Any]] = {}
    for group in groups:
        place = places.setdefault(
            (group.locale, group.region),
            {"locale": group.locale, "region": group.region, "groups": 0, "questions": 0},
        )
        place["groups"] += 1
        place["questions"] += group.count
    return sorted(places.values(), key=lambda p: (-p["questions"], p["locale"], p["region"]))


def _suggestions(
    request: HttpRequest, kb: KnowledgeBase, group: QuestionGroup, same_model: bool
) -> list[Any]:
    """The top articles search finds for the group's question, even below the chat's answer threshold
    (none while the embedding model cannot be reached: the picker still works)."""
    try:
        return knowledge_search(
            tenant=request.tenant,  # type: ignore[attr-defined]
            query=group.question,
            locale=group.locale,
            region=group.region or None,
            k=SUGGESTIONS,
            kb=kb,
            query_vector=group.vector if same_model else None,
        )
    except EmbeddingError:
        return []


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_GET
def learning_view(request: HttpRequest, tenant_slug: str, kb_id: Any) -> HttpResponse:
    """Questions the assistant could not answer (last 30 days), grouped, with articles to attach them to."""
    kb = _kb_or_404(kb_id)
    context, status = _page_context(request, kb, request.GET)
    return render(request, "knowledge/learning/unanswered.html", context, status=status)


def _invalid(
    request: HttpRequest, kb: KnowledgeBase, group: str, errors: list[str], back: str
) -> HttpResponse:
    """The list again (as filtered), with the errors next to the group that caused them."""
    context, _status = _page_context(request, kb, QueryDict(back), {group: errors})
    if not any(row["errors"] for row in context["rows"]):  # the group is not on this page (any more)
        context["page_errors"] = errors
    return render(request, "knowledge/learning/unanswered.html", context, status=400)


def _form_errors(form: forms.Form) -> list[str]:
    return [str(m) for errors in form.errors.values() for m in errors]


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_POST
def learning_attach_view(request: HttpRequest, tenant_slug: str, kb_id: Any) -> HttpResponse:
    """Add a group's question as a phrasing of an article (live at once) and take the group off the list."""
    kb = _kb_or_404(kb_id)
    form = AttachForm(request.POST)
    back = _back_query(request.POST.get("back", ""))
    if not form.is_valid():
        return _invalid(request, kb, request.POST.get("group", "")[:64], _form_errors(form), back)
    data = form.cleaned_data
    locale = kb_locale(kb, data["locale"])
    target = phrasing_target(
        kb=kb, article_key=data["article"], locale=locale, region=kb_region(kb, data["region"])
    )
    if target is None:
        error = _("“%(key)s” has no published text in %(where)s.") % {"key": data["article"], "where": locale}
        return _invalid(request, kb, data["group"], [error], back)
    try:
        phrasing_attach(
            kb=kb,
            article_key=data["article"],
            locale=target.locale,
            region=target.region,
            text=data["text"],
            actor=request.user,
            request=request,
            questions=data["questions"],
        )
    except ValidationFailed as exc:
        return _invalid(
            request, kb, data["group"], [m for ms in exc.errors.values() for m in ms] or [str(exc)], back
        )
    messages.success(
        request,
        _(
            "Added as a phrasing of “%(title)s” (%(locale)s): the next customer who asks this gets this "
            "article."
        )
        % {
            "title": target.title,
            "locale": f"{target.locale}/{target.region}" if target.region else target.locale,
        },
    )
    return redirect(_list_url(request, kb, back))


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_POST
def learning_dismiss_view(request: HttpRequest, tenant_slug: str, kb_id: Any) -> HttpResponse:
    """Hide a group for good (not a question for the help center); asked again, it stays hidden."""
    kb = _kb_or_404(kb_id)
    form = GroupForm(request.POST)
    back = _back_query(request.POST.get("back", ""))
    if not form.is_valid():
        return _invalid(request, kb, request.POST.get("group", "")[:64], _form_errors(form), back)
    data = form.cleaned_data
    questions_dismiss(
        kb=kb,
        locale=kb_locale(kb, data["locale"]),
        region=kb_region(kb, data["region"]),
        questions=data["questions"],
        actor=request.user,
        request=request,
    )
    messages.success(request, _("The questions are dismissed and will not be listed again."))
    return redirect(_list_url(request, kb, back))


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_POST
def learning_create_view(request: HttpRequest, tenant_slug: str, kb_id: Any) -> HttpResponse:
    """Start a new article from a group (a draft in its locale and region, its questions as phrasings), take
    the group off the list and open the editor on the draft."""
    kb = _kb_or_404(kb_id)
    form = CreateForm(request.POST)
    back = _back_query(request.POST.get("back", ""))
    if not form.is_valid():
        return _invalid(request, kb, request.POST.get("group", "")[:64], _form_errors(form), back)
    data = form.cleaned_data
    try:
        translation = article_create_from_questions(
            kb=kb,
            key=data["key"],
            locale=kb_locale(kb, data["locale"]),
            region=kb_region(kb, data["region"]),
            title=data["title"],
            phrasings=[p[:1000] for p in request.POST.getlist("phrasings")[:EXAMPLES_POSTED]],
            questions=data["questions"],
            actor=request.user,
            request=request,
        )
    except ValidationFailed as exc:
        return _invalid(
            request, kb, data["group"], [m for ms in exc.errors.values() for m in ms] or [str(exc)], back
        )
    messages.success(
        request,
        _(
            "Article “%(key)s” created as a draft with the customers' questions as phrasings: "
            "write the answer."
        )
        % {"key": translation.article.key},
    )
    url = reverse(
        "knowledge:editor",
        kwargs={
            "tenant_slug": tenant_slug,
            "kb_id": kb.pk,
            "key": translation.article.key,
            "locale": translation.locale,
        },
    )
    return redirect(f"{url}?{urlencode({'region': translation.region})}" if translation.region else url)
