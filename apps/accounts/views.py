"""Sign-in, the second factor, profile, password pages and invitations. Thin: services do the work."""

from __future__ import annotations

from base64 import b32encode
from typing import Any
from urllib.parse import urlencode

import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout as auth_logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render, resolve_url
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts import selectors, services
from apps.accounts.forms import (
    IdentifyForm,
    InvitationSignupForm,
    LoginForm,
    OrganisationForm,
    OTPTokenForm,
    PreferencesForm,
    TOTPConfirmForm,
    TwoFactorRemoveForm,
    lockout_message,
)
from apps.core.errors import Conflict, HubError, NotFound
from apps.core.forms import add_service_errors
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required
from apps.tenants.models import Membership, Role
from apps.tenants.services import invitation_resolve


def _lockout_message() -> str:
    return lockout_message()


def _invalid_login_message() -> str:
    return _("Please enter a correct username and password. Both fields may be case-sensitive.")


def safe_next(request: HttpRequest, default: str = settings.LOGIN_REDIRECT_URL) -> str:
    """Return the `next` URL when it stays on this site, else `default` (no open redirects)."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return resolve_url(default)


def _data(request: HttpRequest) -> Any:
    """The POST data to bind a form to, or None on GET (an empty POST still binds, and fails validation)."""
    return request.POST if request.method == "POST" else None


def _with_next(url_name: str, next_url: str) -> str:
    return reverse(url_name) + "?" + urlencode({"next": next_url})


# --- sign-in, second step, sign-out -----------------------------------------------------------------------
IDENTIFY_STEP = "identify"


def _login_page(request: HttpRequest, form: Form, next_url: str, *, status: int = 200) -> HttpResponse:
    password_step = isinstance(form, LoginForm)
    if password_step and form.is_bound is False and form.initial.get("username"):
        form.fields["username"].widget.attrs.pop("autofocus", None)
        form.fields["password"].widget.attrs["autofocus"] = True
    context = {"form": form, "next": next_url, "password_step": password_step, "identify": IDENTIFY_STEP}
    return render(request, "accounts/login.html", context, status=status)


def _sso_redirect(url: str, next_url: str) -> HttpResponse:
    return redirect(url + "?" + urlencode({"next": next_url}))


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    """Sign in in two steps on one page, without JavaScript: who (home-realm discovery), then the password.

    An address in a domain a tenant verified for single sign-on goes straight to that tenant's IdP; anything
    else gets the password step with the same page whether or not the account exists (only whether a domain
    uses SSO shows, and that is public by nature). A POST without the identify marker is a full password
    sign-in (both fields at once, as password managers and scripts send it).
    """
    next_url = safe_next(request)
    if request.user.is_authenticated and request.method == "GET":
        return redirect(next_url)
    if request.method == "GET":
        form: Form = LoginForm() if request.GET.get("step") == "password" else IdentifyForm()
        return _login_page(request, form, next_url)
    if request.POST.get("step") == IDENTIFY_STEP:
        identify = IdentifyForm(request.POST)
        if not identify.is_valid():
            return _login_page(request, identify, next_url, status=400)
        username = identify.cleaned_data["username"].strip()
        provider = selectors.identity_provider_for_email(email=username) if "@" in username else None
        if provider is not None:
            url = reverse("accounts:sso-start", kwargs={"provider_id": provider.pk})
            return _sso_redirect(url, next_url)
        return _login_page(request, LoginForm(initial={"username": username}), next_url)
    form = LoginForm(request.POST)
    status = 200
    if form.is_valid():
        result = services.login_attempt(
            request=request,
            username=form.cleaned_data["username"],
            password=form.cleaned_data["password"],
        )
        if result.outcome is services.LoginOutcome.OK:
            return redirect(next_url)
        if result.outcome is services.LoginOutcome.NEEDS_OTP:
            return redirect(_with_next("accounts:otp-verify", next_url))
        if result.outcome is services.LoginOutcome.SSO_REQUIRED:
            url = reverse("accounts:sso-tenant", kwargs={"organisation": result.tenant.slug})
            messages.info(request, _("Your organisation signs in with single sign-on."))
            return _sso_redirect(url, next_url)
        if result.outcome is services.LoginOutcome.LOCKED:
            form.add_error(None, _lockout_message())
            status = 429
        else:
            form.add_error(None, _invalid_login_message())
    if form.errors and status == 200:
        status = 400
    return _login_page(request, form, next_url, status=status)


@never_cache
@require_GET
def sso_organisation_view(request: HttpRequest) -> HttpResponse:
    """ "Sign in with your organisation": the tenant's short name, then its IdP (unknown e-mail domains)."""
    next_url = safe_next(request)
    form = OrganisationForm(request.GET if "organisation" in request.GET else None)
    if form.is_valid():
        url = reverse("accounts:sso-tenant", kwargs={"organisation": form.cleaned_data["organisation"]})
        return _sso_redirect(url, next_url)
    return render(
        request,
        "accounts/sso_organisation.html",
        {"form": form, "next": next_url},
        status=400 if form.errors else 200,
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def otp_verify_view(request: HttpRequest) -> HttpResponse:
    """The second sign-in step: a TOTP code or a backup code."""
    next_url = safe_next(request)
    user = request.user
    if selectors.second_factor_done(request=request):
        return redirect(next_url)
    if not selectors.user_has_confirmed_device(user=user):
        return redirect(next_url)
    form = OTPTokenForm(_data(request))
    if request.method == "POST" and form.is_valid():
        if services.otp_verify(request=request, user=user, token=form.cleaned_data["token"]):
            return redirect(next_url)
        if selectors.user_is_locked(user=user):
            auth_logout(request)
            messages.error(request, _lockout_message())
            return redirect("accounts:login")
        form.add_error("token", _("That code is not valid. Try again or use a backup code."))
    return render(
        request,
        "accounts/otp_verify.html",
        {"form": form, "next": next_url},
        status=400 if form.errors else 200,
    )


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        services.record_security_event("logout", user=request.user, request=request, outcome="success")
    auth_logout(request)
    return redirect(settings.LOGOUT_REDIRECT_URL)


# --- password reset (Django's views; the same answer whether or not the address exists) -------------------
def _sso_only_message() -> str:
    return _(
        "Your organisation signs in with single sign-on: there is no password to reset or change here. "
        "Use “Sign in with your organisation” on the sign-in page; your password is managed by your "
        "organisation's identity provider."
    )


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset (mails only accounts with a usable password); an address in a domain that signs in with
    single sign-on is also told to use its organisation's sign-in (a domain fact, not an account fact)."""

    template_name = "accounts/password_reset_form.html"
    email_template_name = "accounts/email/password_reset.txt"
    subject_template_name = "accounts/email/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password-reset-done")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        if selectors.identity_provider_for_email(email=form.cleaned_data["email"]) is not None:
            messages.info(self.request, _sso_only_message())
        return response


password_reset_view = PasswordResetView.as_view()
password_reset_done_view = auth_views.PasswordResetDoneView.as_view(
    template_name="accounts/password_reset_done.html"
)
password_reset_confirm_view = auth_views.PasswordResetConfirmView.as_view(
    template_name="accounts/password_reset_confirm.html",
    success_url=reverse_lazy("accounts:password-reset-complete"),
)
password_reset_complete_view = auth_views.PasswordResetCompleteView.as_view(
    template_name="accounts/password_reset_complete.html"
)


class PasswordChangeView(auth_views.PasswordChangeView):
    """Change the password; an account made by single sign-on has none, so it is told where it signs in."""

    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:profile")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if user.is_authenticated and not user.has_usable_password():
            return render(request, "accounts/password_sso_only.html", {"message": _sso_only_message()})
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        services.record_security_event(
            "password_change", user=self.request.user, request=self.request, outcome="success"
        )
        messages.success(self.request, _("Your password was changed."))
        return response


password_change_view = PasswordChangeView.as_view()


# --- profile ----------------------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def profile_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    form = PreferencesForm(
        _data(request),
        initial={"language": user.language, "time_zone": user.time_zone},  # type: ignore[union-attr]
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.user_update_preferences(
                user=user, language=form.cleaned_data["language"], time_zone=form.cleaned_data["time_zone"]
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            from django.utils import translation

            translation.activate(user.language)  # type: ignore[union-attr]
            messages.success(request, _("Preferences saved."))
            response = redirect("accounts:profile")
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                user.language,  # type: ignore[union-attr]
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
            return response
    context = {
        "form": form,
        "two_factor_enabled": selectors.totp_device_confirmed(user=user) is not None,
        "two_factor_required": selectors.user_requires_2fa(user=user),
    }
    return render(request, "accounts/profile.html", context, status=400 if form.errors else 200)


# --- two-factor devices -----------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET"])
def twofactor_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    context = {
        "device": selectors.totp_device_confirmed(user=user),
        "backup_codes_remaining": selectors.backup_codes_remaining(user=user),
        "two_factor_required": selectors.user_requires_2fa(user=user),
        "remove_form": TwoFactorRemoveForm(),
    }
    return render(request, "accounts/twofactor.html", context)


def _qr_svg(data: str) -> str:
    """Render a QR code as inline SVG, locally (the secret never leaves the server)."""
    svg = segno.make(data, error="m").svg_inline(
        scale=5, border=2, title=_("QR code for your authenticator app")
    )
    return mark_safe(svg)  # noqa: S308 - segno output from our own data, no user markup


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def twofactor_enroll_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    next_url = safe_next(request)
    try:
        device = services.totp_enrollment_start(user=user)
    except Conflict:
        return redirect("accounts:twofactor")
    form = TOTPConfirmForm(_data(request))
    if request.method == "POST" and form.is_valid():
        try:
            codes = services.totp_enrollment_confirm(
                request=request, user=user, token=form.cleaned_data["token"]
            )
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Two-factor authentication is on."))
            return _backup_codes_page(request, codes=codes, next_url=next_url)
    secret = b32encode(device.bin_key).decode()
    context = {
        "form": form,
        "qr_svg": _qr_svg(device.config_url),
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "next": next_url,
        "required": selectors.user_requires_2fa(user=user),
    }
    return render(request, "accounts/twofactor_enroll.html", context, status=400 if form.errors else 200)


def _backup_codes_page(request: HttpRequest, *, codes: list[str], next_url: str) -> HttpResponse:
    """Show freshly generated backup codes in the answer to the POST that made them: the only time they exist
    in the clear (the database keeps digests, the session nothing). `never_cache` on the views keeps them out
    of caches."""
    return render(request, "accounts/backup_codes.html", {"codes": codes, "next": next_url})


@never_cache
@login_required
@require_POST
def backup_codes_regenerate_view(request: HttpRequest) -> HttpResponse:
    try:
        codes = services.backup_codes_regenerate(request=request, user=request.user)
    except Conflict as exc:
        messages.error(request, str(exc))
        return redirect("accounts:twofactor")
    return _backup_codes_page(request, codes=codes, next_url=safe_next(request, default="accounts:twofactor"))


@login_required
@require_POST
def twofactor_remove_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    form = TwoFactorRemoveForm(request.POST)
    if form.is_valid():
        try:
            services.two_factor_remove(request=request, user=user, token=form.cleaned_data["token"])
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Two-factor authentication was removed."))
            return redirect("accounts:twofactor")
    context = {
        "device": selectors.totp_device_confirmed(user=user),
        "backup_codes_remaining": selectors.backup_codes_remaining(user=user),
        "two_factor_required": selectors.user_requires_2fa(user=user),
        "remove_form": form,
    }
    return render(request, "accounts/twofactor.html", context, status=400)


# --- invitations ------------------------------------------------------------------------------------------
@sensitive_post_parameters("password1", "password2")
@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept_view(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invitation = invitation_resolve(token=token)
    except NotFound:
        return render(request, "accounts/invitation_invalid.html", status=404)
    context: dict[str, Any] = {"invitation": invitation, "role_label": Role(invitation.role).label}
    user = request.user
    if user.is_authenticated:
        if not services.invitation_matches_user(invitation=invitation, user=user):
            return render(request, "accounts/invitation_wrong_user.html", context, status=403)
        if request.method == "POST":
            try:
                membership = services.invitation_accept_as_user(request=request, token=token, user=user)
            except NotFound:
                return render(request, "accounts/invitation_invalid.html", status=404)
            messages.success(request, _("Welcome to %(tenant)s.") % {"tenant": membership.tenant.name})
            return redirect("console:tenant-home", tenant_slug=membership.tenant.slug)
        return render(request, "accounts/invitation_accept.html", context)
    if selectors.user_by_email(email=invitation.email) is not None:
        messages.info(request, _("Sign in to accept the invitation."))
        return redirect_to_login(request.get_full_path())
    form: Form = InvitationSignupForm(_data(request))
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.user_signup_from_invitation(
                request=request,
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except NotFound:
            return render(request, "accounts/invitation_invalid.html", status=404)
        except (HubError, ValidationError) as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Welcome to %(tenant)s.") % {"tenant": membership.tenant.name})
            return HttpResponseRedirect(
                reverse("console:tenant-home", kwargs={"tenant_slug": membership.tenant.slug})
            )
    context["form"] = form
    return render(request, "accounts/invitation_signup.html", context, status=400 if form.errors else 200)


# --- admin unlock (accounts:member-unlock, under the tenant's member pages) ---------------------------------
@tenant_permission_required(roles.MANAGE_MEMBERS)
@require_POST
def member_unlock_view(request: HttpRequest, tenant_slug: str, pk: int) -> HttpResponse:
    """Let a tenant admin (or an operator) clear the sign-in lockout of one of the tenant's members."""
    membership = get_object_or_404(
        Membership.objects.select_related("user"),
        pk=pk,
        tenant=request.tenant,  # type: ignore[attr-defined]
    )
    was_locked = services.login_unlock(user=membership.user, actor=request.user, request=request)
    if was_locked:
        messages.success(request, _("%(user)s can sign in again.") % {"user": membership.user.get_username()})
    else:
        messages.info(request, _("%(user)s was not locked out.") % {"user": membership.user.get_username()})
    return redirect("tenants:member-edit", tenant_slug=tenant_slug, pk=pk)
