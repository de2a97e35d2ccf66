"""Regions and tenants (control silo) and each tenant's anchor row in its home region."""

from __future__ import annotations

from typing import ClassVar

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
