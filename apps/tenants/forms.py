"""Forms for tenants, members and invitations. Validation of business rules stays in services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from apps.tenants.models import Region, Role, Tenant, locale_validator


class LocaleListField(forms.CharField):
    """Comma-separated locale codes, each validated."""

    default_error_messages = {"invalid": _("Use comma-separated locale codes such as “en, de, fr-CA”.")}

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [item.strip() for item in text.split(",") if item.strip()]

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        for item in value:
            locale_validator(item)

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list | tuple) else value


class TenantCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200)
    slug = forms.SlugField(
        label=_("Slug"), max_length=50, help_text=_("Used in URLs: /t/<slug>/. Cannot change later.")
    )
    home_region = forms.ModelChoiceField(
        label=_("Home region"),
        queryset=Region.objects.filter(is_active=True),
        empty_label=None,
        help_text=_("Where the tenant's data is stored. Fixed once the tenant has data."),
    )
    default_locale = forms.CharField(
        label=_("Default locale"), max_length=16, initial="en", validators=[locale_validator]
    )
    enabled_locales = LocaleListField(
        label=_("Enabled locales"), required=False, help_text=_("Comma-separated, e.g. en, de, fr-CA.")
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["home_region"].initial = Region.objects.filter(code=settings.HUB_DEFAULT_REGION).first()


class TenantSettingsForm(forms.ModelForm):
    enabled_locales = LocaleListField(
        label=_("Enabled locales"), required=False, help_text=_("Comma-separated, e.g. en, de, fr-CA.")
    )

    class Meta:
        model = Tenant
        fields = ["name", "home_region", "default_locale", "enabled_locales", "require_2fa"]
        labels = {"name": _("Name"), "home_region": _("Home region"), "default_locale": _("Default locale")}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        region_field = self.fields["home_region"]
        assert isinstance(region_field, forms.ModelChoiceField)
        region_field.queryset = Region.objects.filter(is_active=True)
        region_field.empty_label = None
        region_field.disabled = True
        region_field.help_text = _(
            "Fixed: the tenant's data lives there. Moving a tenant is a data migration."
        )


class InviteForm(forms.Form):
    email = forms.EmailField(label=_("E-mail address"))
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.VIEWER)


class MembershipForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices)
    locales = LocaleListField(
        label=_("Locales"),
        required=False,
        help_text=_("Localization editors: locales they may edit; empty means all."),
    )
    regions = forms.MultipleChoiceField(
        label=_("Regions"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Localization editors: regional variants they may edit; none ticked means all."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        regions_field = self.fields["regions"]
        assert isinstance(regions_field, forms.MultipleChoiceField)
        regions_field.choices = [(r.code, r.name) for r in Region.objects.filter(is_active=True)]
