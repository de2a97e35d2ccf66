"""The access review console page (/t/<slug>/access-review/): who could do what in the tenant, its signed
exports and the reviewer's sign-off. Compliance officers and admins (VIEW_AUDIT); the API is
apps/accounts/api/access_review.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from apps.accounts import selectors
from apps.accounts.services.access_review import (
    NOTE_MAX_LENGTH,
    access_review_complete,
    access_review_export,
    access_review_view_record,
)
from apps.audit import signing
from apps.core.confirm import CONFIRM_FIELD, CONFIRM_VALUE, Confirmation, confirmation_required
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required
from apps.tenants.models import MembershipSource, Role

PAGE_SIZE = 50
FLAG_LABELS = {
    selectors.FLAG_MISSING_2FA: gettext_lazy("No 2FA"),
    selectors.FLAG_DORMANT: gettext_lazy("No sign-in for 90 days"),
    selectors.FLAG_TOKEN_UNUSED: gettext_lazy("Unused for 90 days"),
    selectors.FLAG_TOKEN_NO_EXPIRY: gettext_lazy("No expiry"),
}
TOKEN_KIND_LABELS = {
    "management": gettext_lazy("Management API token"),
    "scim": gettext_lazy("SCIM token"),
    "chat_api_key": gettext_lazy("Chat API key"),
}
TWO_FACTOR_LABELS = {"totp": gettext_lazy("Authenticator app"), "backup_codes": gettext_lazy("Backup codes")}
# sort key -> (member field, descending)
SORTS = {
    "username": ("username", False),
    "role": ("role", False),
    "member_since": ("member_since", False),
    "-member_since": ("member_since", True),
    "last_sign_in": ("last_sign_in", False),
    "-last_sign_in": ("last_sign_in", True),
}


class ReviewFilterForm(forms.Form):
    role = forms.ChoiceField(
        label=gettext_lazy("Role"), required=False, choices=[("", gettext_lazy("All roles")), *Role.choices]
    )
    flag = forms.ChoiceField(
        label=gettext_lazy("Flag"),
        required=False,
        choices=[
            ("", gettext_lazy("All members")),
            ("any", gettext_lazy("Any flag")),
            *((code, FLAG_LABELS[code]) for code in selectors.MEMBER_FLAGS),
        ],
    )
    sort = forms.ChoiceField(
        label=gettext_lazy("Sort by"),
        required=False,
        choices=[
            ("username", gettext_lazy("User")),
            ("role", gettext_lazy("Role")),
            ("member_since", gettext_lazy("Member since (oldest first)")),
            ("-member_since", gettext_lazy("Member since (newest first)")),
            ("last_sign_in", gettext_lazy("Last sign-in (longest ago first)")),
            ("-last_sign_in", gettext_lazy("Last sign-in (most recent first)")),
        ],
    )


class ReviewExportForm(forms.Form):
    format = forms.ChoiceField(
        label=gettext_lazy("Format"), choices=[("csv", "CSV"), ("json", "JSON")], initial="csv"
    )


class ReviewCompleteForm(forms.Form):
    note = forms.CharField(
        label=gettext_lazy("Note (optional)"),
        required=False,
        max_length=NOTE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("What you checked and what you asked to change; recorded with your sign-off."),
    )


def _members(report: dict[str, Any], form: ReviewFilterForm) -> list[dict[str, Any]]:
    rows = list(report["members"])
    data = form.cleaned_data if form.is_valid() else {}
    if data.get("role"):
        rows = [r for r in rows if r["role"] == data["role"]]
    flag = data.get("flag")
    if flag == "any":
        rows = [r for r in rows if r["flags"]]
    elif flag:
        rows = [r for r in rows if flag in r["flags"]]
    field, descending = SORTS.get(data.get("sort") or "username", SORTS["username"])
    # Never signed in sorts as longest ago: an empty string sorts before every date.
    rows.sort(key=lambda r: (r[field] or "", r["username"]), reverse=descending)
    return rows


DATE_FIELDS = ("member_since", "last_sign_in", "created", "expires", "last_used", "revoked")


def _dates(row: dict[str, Any]) -> None:
    """Parse the report's ISO dates into `<field>_at` for the template's date filter (the user's zone)."""
    for name in DATE_FIELDS:
        if name in row:
            row[f"{name}_at"] = datetime.fromisoformat(row[name]) if row[name] else None


def _labelled(report: dict[str, Any]) -> dict[str, Any]:
    """Add display labels and parsed dates to the rows, once the (language-neutral) digest is taken."""
    role_labels = dict(Role.choices)
    source_labels = dict(MembershipSource.choices)
    for member in report["members"]:
        member["role_label"] = role_labels.get(member["role"], member["role"])
        member["managed_label"] = source_labels.get(member["managed_by"], member["managed_by"])
        member["flag_labels"] = [FLAG_LABELS[f] for f in member["flags"]]
        member["two_factor_labels"] = [TWO_FACTOR_LABELS.get(k, k) for k in member["two_factor"]]
        _dates(member)
    for person in report["operators"]:
        person["two_factor_labels"] = [TWO_FACTOR_LABELS.get(k, k) for k in person["two_factor"]]
        _dates(person)
    for token in report["tokens"]:
        _dates(token)
        token["kind_label"] = TOKEN_KIND_LABELS.get(token["kind"], token["kind"])
        token["flag_labels"] = [FLAG_LABELS[f] for f in token["flags"]]
    return report


@tenant_permission_required(roles.VIEW_AUDIT)
@require_GET
def access_review_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """The report: members (filtered, sorted, paginated), operators, tokens, past sign-offs; the look is
    recorded (access_review.viewed)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    report = selectors.access_review_report(tenant=tenant)
    digest = selectors.access_review_digest(report)
    with tenant_context(tenant):
        reviews = selectors.access_review_list()
    access_review_view_record(
        tenant=tenant, actor=request.user, digest=digest, via={"via": "console"}, request=request
    )
    form = ReviewFilterForm(request.GET)
    members = _members(report, form)
    report = _labelled(report)
    context = {
        "report": report,
        "digest": digest,
        "filter_form": form,
        "sort": form.cleaned_data.get("sort") or "username" if form.is_valid() else "username",
        "export_form": ReviewExportForm(),
        "complete_form": ReviewCompleteForm(),
        "page_obj": Paginator(members, PAGE_SIZE).get_page(request.GET.get("page")),
        "reviews": reviews,
        "last_review": reviews[0] if reviews else None,
        "public_key": signing.public_key_b64(),
        "confirm_field": CONFIRM_FIELD,
        "confirm_value": CONFIRM_VALUE,
        "role_permissions": {label: sorted(roles.permissions_for(code)) for code, label in Role.choices},
    }
    return render(request, "accounts/access_review.html", context, status=400 if form.errors else 200)


@tenant_permission_required(roles.VIEW_AUDIT)
@require_POST
def access_review_export_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Download the report as a signed zip (the service audits the export)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    form = ReviewExportForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose CSV or JSON."))
        return redirect("accounts:access-review", tenant_slug=tenant.slug)
    fmt = form.cleaned_data["format"]
    data, _digest = access_review_export(tenant=tenant, fmt=fmt, actor=request.user, request=request)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="access-review-{tenant.slug}-{stamp}-{fmt}.zip"'
    response["Cache-Control"] = "no-store"
    return response


@tenant_permission_required(roles.VIEW_AUDIT)
@require_POST
def access_review_complete_view(request: HttpRequest, tenant_slug: str) -> HttpResponse:
    """Record the sign-off once confirmed (the page's checkbox, or the confirmation page)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    form = ReviewCompleteForm(request.POST)
    note = form.cleaned_data["note"] if form.is_valid() else ""
    if form.errors:
        messages.error(request, _("The note is too long."))
        return redirect("accounts:access-review", tenant_slug=tenant.slug)
    page = confirmation_required(
        request,
        Confirmation(
            title=_("Complete the access review"),
            object_name=_("Access review of %(tenant)s") % {"tenant": tenant.name},
            consequence=_(
                "Your sign-off is recorded in the audit log with the digest of the report as it is now."
            ),
            button=_("Review completed"),
            cancel_url=reverse("accounts:access-review", args=[tenant.slug]),
            fields={"note": note},
        ),
    )
    if page is not None:
        return page
    try:
        review = access_review_complete(tenant=tenant, actor=request.user, note=note, request=request)
    except ValidationFailed as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, _("Review recorded (report digest %(digest)s).") % {"digest": review.digest[:12]}
        )
    return redirect("accounts:access-review", tenant_slug=tenant.slug)
