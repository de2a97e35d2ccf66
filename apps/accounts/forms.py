"""Forms for sign-in, the second factor, preferences and sign-up. Validation only; services do the work."""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Any, cast

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
from apps.tenants.models import Role


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


# --- single sign-on configuration (console; the rules are in services/sso_config.py) ----------------------
def _lines(value: str) -> list[str]:
    return [v.strip() for v in value.replace(",", "\n").splitlines() if v.strip()]


class IdentityProviderForm(forms.Form):
    """One identity provider; only the fields of its protocol. The client secret is write-only: never shown
    back, and left blank on edit it stays as stored."""

    name = forms.CharField(label=_("Name"), max_length=100)
    is_active = forms.BooleanField(label=_("Active"), required=False, initial=True)
    oidc_discovery_url = forms.CharField(
        label=_("Discovery URL"),
        max_length=500,
        help_text=_("The issuer's /.well-known/openid-configuration address."),
    )
    oidc_client_id = forms.CharField(label=_("Client ID"), max_length=255)
    oidc_client_secret = forms.CharField(
        label=_("Client secret"),
        max_length=1000,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    oidc_scopes = forms.CharField(
        label=_("Scopes"), max_length=255, initial="openid email profile", required=False
    )
    saml_metadata_url = forms.CharField(
        label=_("IdP metadata URL"),
        max_length=500,
        required=False,
        help_text=_("Fetched through the guarded HTTP session; or paste the metadata XML instead."),
    )
    saml_metadata_xml = forms.CharField(
        label=_("IdP metadata XML"), required=False, widget=forms.Textarea(attrs={"rows": 6})
    )
    groups_claim = forms.CharField(
        label=_("Groups claim"),
        max_length=200,
        initial="groups",
        help_text=_("The OIDC claim or SAML attribute that lists the user's groups."),
    )
    default_role = forms.ChoiceField(
        label=_("Role without a matching group"),
        required=False,
        help_text=_("Leave empty to refuse users none of whose groups is mapped to a role."),
    )
    accept_idp_mfa = forms.BooleanField(
        label=_("Accept the IdP's multi-factor authentication instead of our TOTP"), required=False
    )
    mfa_values = forms.CharField(
        label=_("Values that mean MFA"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("amr/acr values or AuthnContextClassRefs, one per line (empty: the usual ones)."),
    )

    OIDC_ONLY = ("oidc_discovery_url", "oidc_client_id", "oidc_client_secret", "oidc_scopes")
    SAML_ONLY = ("saml_metadata_url", "saml_metadata_xml")

    def __init__(self, *args: Any, protocol: str, has_secret: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protocol = protocol
        cast(forms.ChoiceField, self.fields["default_role"]).choices = [("", _("(refuse)")), *Role.choices]
        for name in self.SAML_ONLY if protocol == "oidc" else self.OIDC_ONLY:
            del self.fields[name]
        if "oidc_client_secret" in self.fields:
            self.fields["oidc_client_secret"].help_text = (
                _("Stored encrypted and never shown again. Leave empty to keep the current secret.")
                if has_secret
                else _("Stored encrypted and never shown again.")
            )

    @staticmethod
    def initial_of(provider: Any) -> dict[str, Any]:
        """The form's values for an existing provider (never the secret)."""
        return {
            "name": provider.name,
            "is_active": provider.is_active,
            "oidc_discovery_url": provider.oidc_discovery_url,
            "oidc_client_id": provider.oidc_client_id,
            "oidc_scopes": provider.oidc_scopes,
            "saml_metadata_url": provider.saml_metadata_url,
            "saml_metadata_xml": provider.saml_metadata_xml,
            "groups_claim": provider.groups_claim,
            "default_role": provider.default_role,
            "accept_idp_mfa": provider.accept_idp_mfa,
            "mfa_values": "\n".join(provider.mfa_values),
        }

    def provider_data(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["protocol"] = self.protocol
        data["mfa_values"] = _lines(data.get("mfa_values") or "")
        return data


class SsoDomainForm(forms.Form):
    domain = forms.CharField(
        label=_("E-mail domain"),
        max_length=253,
        help_text=_("Users whose e-mail address ends in this domain sign in through the chosen provider."),
    )
    identity_provider = forms.TypedChoiceField(label=_("Identity provider"), coerce=int)

    def __init__(self, *args: Any, providers: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["identity_provider"]).choices = [
            (p.pk, p.name) for p in providers
        ]


class RoleMappingForm(forms.Form):
    group = forms.CharField(
        label=_("IdP group"),
        max_length=255,
        help_text=_("The group's name or ID exactly as the IdP sends it."),
    )
    role = forms.ChoiceField(label=_("Role"))
    locales = forms.CharField(
        label=_("Locales"),
        required=False,
        help_text=_("Localization editors only: comma-separated locales they may edit (empty: all)."),
    )
    regions = forms.CharField(
        label=_("Regions"),
        required=False,
        help_text=_("Localization editors only: comma-separated regions (empty: all)."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["role"]).choices = Role.choices

    @staticmethod
    def initial_of(mapping: Any) -> dict[str, Any]:
        return {
            "group": mapping.group,
            "role": mapping.role,
            "locales": ", ".join(mapping.locales),
            "regions": ", ".join(mapping.regions),
        }

    def mapping_data(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["locales"] = _lines(data.get("locales") or "")
        data["regions"] = _lines(data.get("regions") or "")
        return data


class RoleMappingPreviewForm(forms.Form):
    groups = forms.CharField(
        label=_("Groups"),
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=10_000,
        help_text=_("One group per line, as the IdP would send them."),
    )
    identity_provider = forms.TypedChoiceField(
        label=_("Identity provider (for its default role)"), coerce=int, required=False, empty_value=None
    )

    def __init__(self, *args: Any, providers: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["identity_provider"]).choices = [
            ("", _("(none)")),
            *((p.pk, p.name) for p in providers),
        ]

    def group_set(self) -> set[str]:
        return set(_lines(self.cleaned_data["groups"]))


class SsoEnforcementForm(forms.Form):
    sso_enforced = forms.BooleanField(
        label=_("Members must sign in through the identity provider"), required=False
    )
    confirm_without_break_glass = forms.BooleanField(
        label=_("I understand that without a break-glass admin nobody can sign in if the IdP fails"),
        required=False,
    )


class BreakGlassForm(forms.Form):
    user = forms.TypedChoiceField(label=_("Break-glass admin"), coerce=int, required=False, empty_value=None)

    def __init__(self, *args: Any, admins: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["user"]).choices = [
            ("", _("(none)")),
            *((m.user_id, m.user.get_username()) for m in admins),
        ]
