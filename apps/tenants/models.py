"""Regions and tenants (control silo) and each tenant's anchor row in its home region."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import RegionModel, TimeStampedModel

locale_validator = RegexValidator(
    r"^[a-z]{2,3}(-[A-Z]{2}|-[A-Z][a-z]{3})?$",
    _("Use a locale code such as “en”, “fr-CA” or “zh-Hant”."),
)
slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    _("Use 1-50 lowercase letters, digits and hyphens, not starting or ending with a hyphen."),
)


class Region(models.Model):
    """A data residency region; each has its own database (alias `region_<code>`)."""

    code = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name

    @property
    def db_alias(self) -> str:
        return f"region_{self.code}"


class Tenant(TimeStampedModel):
    """A customer organisation; its data lives in the database of its home region."""

    slug = models.SlugField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    home_region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="tenants")
    default_locale = models.CharField(max_length=16, default="en", validators=[locale_validator])
    enabled_locales = ArrayField(
        models.CharField(max_length=16, validators=[locale_validator]), default=list, blank=True
    )
    is_active = models.BooleanField(default=True)
    require_2fa = models.BooleanField(
        _("require two-factor authentication for everyone"),
        default=False,
        help_text=_(
            "Admins, compliance officers and operators always need it; this extends it to every member."
        ),
    )
    sso_enforced = models.BooleanField(
        _("require single sign-on"),
        default=False,
        help_text=_(
            "Members must sign in through the tenant's identity provider; local passwords are refused, "
            "except for the break-glass admin an operator designates."
        ),
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def region_code(self) -> str:
        return self.home_region.code


class RegionTenant(RegionModel):
    """The tenant's anchor in its home region: proof the region holds (and is meant to hold) its data."""

    hub_silo: ClassVar[str] = "region"

    slug = models.SlugField(max_length=50)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant_id"], name="regiontenant_one_per_tenant")]

    def __str__(self) -> str:
        return self.slug


class Role(models.TextChoices):
    ADMIN = "admin", _("Admin")
    CONNECTOR_MANAGER = "connector_manager", _("Connector manager")
    COMPLIANCE_OFFICER = "compliance_officer", _("Compliance officer")
    LOCALIZATION_EDITOR = "localization_editor", _("Localization editor")
    VIEWER = "viewer", _("Viewer")


class MembershipSource(models.TextChoices):
    """Who manages a membership: people in the console, the IdP's groups at sign-in, or SCIM."""

    LOCAL = "local", _("Console")
    SSO = "sso", _("Single sign-on")
    SCIM = "scim", _("SCIM provisioning")


class Membership(TimeStampedModel):
    """A user's role in one tenant. A localization editor may be limited to some locales and regions.

    `source` says who manages it: memberships from single sign-on or SCIM follow the IdP's groups (the role
    mapping) and go away when the groups no longer grant access; `is_break_glass` marks the one admin an
    operator lets in with a local password (and TOTP) while the tenant enforces single sign-on.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=32, choices=Role.choices, default=Role.VIEWER)
    locales = ArrayField(
        models.CharField(max_length=16, validators=[locale_validator]),
        default=list,
        blank=True,
        verbose_name=_("locales"),
        help_text=_("Localization editors: locales they may edit (empty: all)."),
    )
    regions = ArrayField(
        models.CharField(max_length=16),
        default=list,
        blank=True,
        verbose_name=_("regions"),
        help_text=_("Localization editors: regional variants they may edit (empty: all)."),
    )
    source = models.CharField(
        _("managed by"), max_length=8, choices=MembershipSource.choices, default=MembershipSource.LOCAL
    )
    is_break_glass = models.BooleanField(
        _("break-glass admin"),
        default=False,
        help_text=_("May sign in with a password and TOTP while the tenant requires single sign-on."),
    )

    class Meta:
        ordering = ["tenant", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class Invitation(TimeStampedModel):
    """An invitation to join a tenant; the link carries a signed, expiring token for this row."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(_("email address"))
    role = models.CharField(_("role"), max_length=32, choices=Role.choices, default=Role.VIEWER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.email


class ManagementToken(TimeStampedModel):
    """A tenant-scoped token for the management API, acting with a member's permissions.

    Only a SHA-256 hash is stored; the prefix is shown so people can tell tokens apart.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="management_tokens")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="management_tokens"
    )
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
