"""Console "Exchange with translators": XLIFF export per target locale and import (apps/knowledge/xliff.py).

Thin: the forms offer only the locales and regions the member may edit; the services check them again. A
refused file (unsafe, not XLIFF 1.2, another knowledge base's, too large) is a form error (400) and nothing is
stored; an accepted one is imported in the background and the upload redirects to the import's page, which
polls while it runs and then lists per-unit problems with their line and unit id.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from apps.core.errors import ValidationFailed
from apps.knowledge.models import KnowledgeBase, XliffImportStatus
from apps.knowledge.selectors import (
    kb_get,
    member_may_edit,
    normalize_region,
    xliff_import_get,
    xliff_imports_recent,
)
from apps.knowledge.xliff import (
    CONTENT_TYPE,
    kb_xliff_export,
    xliff_filename,
    xliff_import_queue,
    xliff_too_large,
)
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required


class XliffExportForm(forms.Form):
    locale = forms.ChoiceField(label=gettext_lazy("Target locale"))
    region = forms.ChoiceField(label=gettext_lazy("Regional variant"), required=False)

    def __init__(self, *args: Any, locales: list[str], regions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["locale"]).choices = [(loc, loc) for loc in locales]
        cast(forms.ChoiceField, self.fields["region"]).choices = [
            ("", _("Generic text")),
            *[(reg, reg.upper()) for reg in regions],
        ]


class XliffImportForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("Translated XLIFF file"),
        help_text=gettext_lazy("The file exported here, translated in your CAT tool (XLIFF 1.2)."),
    )


def _kb_or_404(kb_id: Any) -> KnowledgeBase:
    kb = kb_get(kb_id=kb_id)
    if kb is None:
        raise Http404
    return kb


def _choices(request: HttpRequest, kb: KnowledgeBase) -> tuple[list[str], list[str]]:
    """Target locales and regions this member may exchange (the source locale is never a target)."""
    membership = request.membership  # type: ignore[attr-defined]
    locales = [
        loc
        for loc in kb.locales
        if loc != kb.source_locale and member_may_edit(membership=membership, locale=loc)
    ]
    limited = [normalize_region(r) for r in getattr(membership, "regions", None) or []]
    return locales, [r for r in kb.regions if not limited or r in limited]


def _page(
    request: HttpRequest,
    kb: KnowledgeBase,
    *,
    export_form: XliffExportForm | None = None,
    import_form: XliffImportForm | None = None,
    status: int = 200,
) -> HttpResponse:
    locales, regions = _choices(request, kb)
    membership = request.membership  # type: ignore[attr-defined]
    context = {
        "kb": kb,
        "xliff_export_form": export_form or XliffExportForm(locales=locales, regions=regions),
        "xliff_import_form": import_form or XliffImportForm(),
        "xliff_imports": xliff_imports_recent(kb=kb, membership=membership),
        "xliff_max_mb": settings.HUB_KNOWLEDGE_XLIFF_MAX_BYTES // (1024 * 1024),
    }
    return render(request, "knowledge/xliff.html", context, status=status)


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_GET
def xliff_export_view(request: HttpRequest, tenant_slug: str, kb_id: Any) -> HttpResponse:
    """Download the XLIFF file of one target locale (`?locale=&region=`)."""
    kb = _kb_or_404(kb_id)
    locales, regions = _choices(request, kb)
    form = XliffExportForm(request.GET or None, locales=locales, regions=regions)
    if not form.is_valid():
        return _page(request, kb, export_form=form, status=400)
    locale, region = form.cleaned_data["locale"], form.cleaned_data["region"] or ""
    try:
        data = kb_xliff_export(kb=kb, locale=locale, region=region, actor=request.user)
    except ValidationFailed as exc:
        for name, errors in exc.errors.items():
            form.add_error(name if name in form.fields else None, errors)
        return _page(request, kb, export_form=form, status=400)
    response = HttpResponse(data, content_type=f"{CONTENT_TYPE}; charset=utf-8")
    name = xliff_filename(kb=kb, locale=locale, region=region)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


class UploadLimit(FileUploadHandler):
    """Stop reading an upload once it passes HUB_KNOWLEDGE_XLIFF_MAX_BYTES: nothing of it is kept (no
    temporary file grows with an attacker's upload); the view then answers with a form error."""

    too_large = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > settings.HUB_KNOWLEDGE_XLIFF_MAX_BYTES:
            self.too_large = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler (memory or temporary file) makes the file


@csrf_exempt  # only so the upload limit is in place before the CSRF check reads the body; checked below
@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_http_methods(["GET", "POST"])
def xliff_view(request: HttpRequest, tenant_slug: str, kb_id: Any) -> HttpResponse:
    """The exchange page; POST uploads a translated file, queues its import and redirects to its page."""
    limit = UploadLimit(request)
    request.upload_handlers.insert(0, limit)
    return _xliff_view(request, kb_id, limit)


@csrf_protect
def _xliff_view(request: HttpRequest, kb_id: Any, limit: UploadLimit) -> HttpResponse:
    kb = _kb_or_404(kb_id)
    if request.method == "GET":
        return _page(request, kb)
    form = XliffImportForm(request.POST, request.FILES)
    if limit.too_large:
        form.is_valid()
        form.errors.pop("file", None)
        form.add_error("file", xliff_too_large().errors["file"])
        return _page(request, kb, import_form=form, status=400)
    if not form.is_valid():
        return _page(request, kb, import_form=form, status=400)
    upload = form.cleaned_data["file"]
    try:
        job = xliff_import_queue(
            kb=kb,
            data=upload.read(settings.HUB_KNOWLEDGE_XLIFF_MAX_BYTES + 1),
            filename=upload.name or "",
            actor=request.user,
            request=request,
        )
    except ValidationFailed as exc:
        for name, errors in exc.errors.items():
            form.add_error(name if name in form.fields else None, errors)
        return _page(request, kb, import_form=form, status=400)
    return redirect(
        reverse(
            "knowledge:xliff-import",
            kwargs={"tenant_slug": request.tenant.slug, "kb_id": kb.pk, "import_id": job.pk},  # type: ignore[attr-defined]
        )
    )


@tenant_permission_required(roles.EDIT_KNOWLEDGE)
@require_GET
def xliff_import_view(request: HttpRequest, tenant_slug: str, kb_id: Any, import_id: int) -> HttpResponse:
    """One import: its status while queued or running (the page polls), then what it saved and refused.

    Another knowledge base's or tenant's import, or one in a locale or region the member may not edit: 404.
    """
    kb = _kb_or_404(kb_id)
    job = xliff_import_get(
        kb=kb,
        import_id=import_id,
        membership=request.membership,  # type: ignore[attr-defined]
    )
    if job is None:
        raise Http404
    finished = job.status in (XliffImportStatus.DONE, XliffImportStatus.FAILED)
    context = {
        "kb": kb,
        "job": job,
        "finished": finished,
        "xliff_result": job.result if job.status == XliffImportStatus.DONE else None,
    }
    return render(request, "knowledge/xliff_import.html", context)
