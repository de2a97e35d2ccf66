"""The help center's custom domains (control database): which Host header serves which tenant's help center.

Knowledge bases carry their own help center settings (KnowledgeBase.helpcenter_enabled/handle); a domain is
global routing state, like SsoDomain, so it lives beside the tenants, not in a region.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import TimeStampedModel
from apps.tenants.models import Tenant

host_validator = RegexValidator(
    r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    _("Enter a host name such as help.example.com (lower case, no scheme, port or path)."),
)


class HelpCenterDomain(TimeStampedModel):
    """A host name an operator configured (DNS and TLS in place) for one knowledge base's help center.

    Operator-configured, not tenant self-service: the ingress needs the host's certificate and route anyway,
    which only an operator can add, so that is where it is checked (docs/helpcenter.md).
    """

    host = models.CharField(_("host"), max_length=253, unique=True, validators=[host_validator])
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    kb_id = models.UUIDField(_("knowledge base"))
    created_by_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["host"]
        verbose_name = _("help center domain")

    def __str__(self) -> str:
        return self.host
