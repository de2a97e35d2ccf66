"""Forms for sign-in, the second factor, preferences and sign-up. Validation only; services do the work."""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import password_validators_help_texts
from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django_otp.admin import OTPAdminAuthenticationForm

from apps.accounts import selectors, services
from apps.observability.access import client_address


def lockout_message() -> str:
    minutes = max(1, settings.LOGIN_LOCKOUT_WINDOW // 60)
    return gettext(
        "Too many failed sign-in attempts. Try again in %(minutes)s minutes, "
        "or ask an administrator to unlock your account."
    ) % {"minutes": minutes}


class IdentifyForm(forms.Form):
    """The sign-in page's first step: who is signing in (home-realm discovery looks at the e-mail domain)."""

    username = forms.CharField(
        label=_("E-mail or username"),
        max_length=254,
        help_text=_("Your work e-mail address if your organisation signs in with single sign-on."),
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )


class LoginForm(IdentifyForm):
    """The second step (or both at once): the password for a username."""

    password = forms.CharField(
        label=_("Password"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class AdminLoginForm(OTPAdminAuthenticationForm):
    """The Django admin's sign-in (password and second factor in one form) behind the console's lockout.

    Same counters as the console's sign-in (per account name and per client address, in Redis): a locked
    account or address is refused before the password is checked, and every refusal of the form counts.
    """

    def clean(self) -> dict[str, Any]:
        username = str(self.cleaned_data.get("username") or "")
        ip = client_address(self.request.META) if self.request is not None else "unknown"
        if selectors.login_is_locked(username=username, ip=ip):
            services.record_security_event("admin_login", user=None, request=self.request, outcome="locked")
            raise ValidationError(lockout_message(), code="locked")
        try:
            cleaned: dict[str, Any] = super().clean()
        except ValidationError:
            services.login_failure_record(username=username, ip=ip)
            user = selectors.user_by_username(username=username)
            services.record_security_event("admin_login", user=user, request=self.request, outcome="failure")
            raise
        services.login_success_record(username=username)
        services.record_security_event(
            "admin_login", user=self.get_user(), request=self.request, outcome="success"
        )
        return cleaned


class OrganisationForm(forms.Form):
    """ "Sign in with your organisation" when the e-mail domain is not known: the tenant's short name."""

    organisation = forms.SlugField(
        label=_("Organisation"),
        max_length=50,
        help_text=_("Your organisation's short name, as in its console address (/t/<name>/)."),
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )


class OTPTokenForm(forms.Form):
    token = forms.CharField(
        label=_("Code"),
        max_length=32,
        help_text=_("The 6-digit code from your authenticator app, or one of your backup codes."),
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "text",
                "autofocus": True,
                "spellcheck": "false",
            }
        ),
    )


class TOTPConfirmForm(forms.Form):
    token = forms.CharField(
        label=_("Code from your app"),
        max_length=16,
        help_text=_("Enter the 6-digit code your authenticator app shows for this account."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class TwoFactorRemoveForm(forms.Form):
    token = forms.CharField(
        label=_("Current code"),
        max_length=32,
        help_text=_("A code from your authenticator app or a backup code, to confirm it is you."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}),
    )


@cache
def time_zone_choices() -> list[tuple[str, str]]:
    return [(zone, zone) for zone in sorted(zoneinfo.available_timezones()) if "/" in zone or zone == "UTC"]


class PreferencesForm(forms.Form):
    language = forms.ChoiceField(label=_("Language"), choices=settings.LANGUAGES)
    time_zone = forms.ChoiceField(
        label=_("Time zone"), help_text=_("Dates and times are shown in this zone.")
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = time_zone_choices()  # type: ignore[attr-defined]


class InvitationSignupForm(forms.Form):
    """A new account for an invited e-mail address; the address itself comes from the invitation."""

    username = forms.CharField(
        label=_("Username"),
        max_length=150,
        help_text=_("Letters, digits and @/./+/-/_ only."),
        widget=forms.TextInput(attrs={"autocomplete": "username"}),
    )
    password1 = forms.CharField(
        label=_("Password"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=_("Password again"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["password1"].help_text = " ".join(password_validators_help_texts())

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"]
        field = get_user_model()._meta.get_field("username")
        for validator in field.validators:
            validator(username)
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(_("A user with that username already exists."))
        return username

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if (
            cleaned.get("password1")
            and cleaned.get("password2")
            and cleaned["password1"] != cleaned["password2"]
        ):
            self.add_error("password2", _("The two passwords do not match."))
        return cleaned
