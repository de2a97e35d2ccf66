"""Writes of a tenant's language-model providers (region database), role-checked and audited.

The API key is encrypted with the tenant's data key and never shown back or audited; the endpoint's region is
checked against the residency policy when a provider is saved enabled (and again before every call).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils.translation import gettext as _

from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.chat.models import LlmProviderConfig
from apps.chat.services.channels import require_channel_manager
from apps.chat.services.providers import provider_config_changed
from apps.core.context import as_ref, tenant_context
from apps.core.errors import ValidationFailed
from apps.policies.services import TransferRefused, transfer_check
from apps.tenants.models import Tenant
from connectors.http import url_origin

FIELDS = (
    "name",
    "region",
    "endpoint_region",
    "base_url",
    "model",
    "prompt_price_per_1k",
    "completion_price_per_1k",
    "enabled",
    "classify_intents",
)


def _price(value: Any, field: str, errors: dict[str, list[str]]) -> Decimal:
    try:
        price = Decimal(str(value if value not in (None, "") else "0"))
    except InvalidOperation:
        errors[field] = [_("Enter a number.")]
        return Decimal(0)
    if price < 0 or price > 1000:
        errors[field] = [_("Enter a price between 0 and 1000 USD.")]
    return price


def _clean(*, tenant: Tenant, data: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    clean["name"] = str(data.get("name") or "").strip()[:100]
    if not clean["name"]:
        errors["name"] = [_("Give the provider a name.")]
    regions = set(settings.HUB_REGIONS)
    clean["region"] = str(data.get("region") or "").strip().lower()
    if clean["region"] and clean["region"] not in regions:
        errors["region"] = [_("Unknown region.")]
    clean["endpoint_region"] = str(data.get("endpoint_region") or "").strip().lower()
    if not clean["endpoint_region"]:
        errors["endpoint_region"] = [_("Say which region the provider's endpoint is in.")]
    url = str(data.get("base_url") or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc or not url_origin(url):
        errors["base_url"] = [_("Enter the API root URL, e.g. https://api.openai.com/v1.")]
    elif settings.HUB_OUTBOUND_REQUIRE_HTTPS and parts.scheme != "https":
        errors["base_url"] = [_("Enter an https:// URL: the API key must never travel in clear text.")]
    clean["base_url"] = url.rstrip("/")
    clean["model"] = str(data.get("model") or "").strip()[:100]
    if not clean["model"]:
        errors["model"] = [_("Name the model, e.g. gpt-4o-mini.")]
    clean["prompt_price_per_1k"] = _price(data.get("prompt_price_per_1k"), "prompt_price_per_1k", errors)
    clean["completion_price_per_1k"] = _price(
        data.get("completion_price_per_1k"), "completion_price_per_1k", errors
    )
    clean["enabled"] = bool(data.get("enabled", True))
    clean["classify_intents"] = bool(data.get("classify_intents", False))
    if clean["enabled"] and "endpoint_region" not in errors:
        try:
            transfer_check(tenant=tenant, destination_region=clean["endpoint_region"], purpose="llm.generate")
        except TransferRefused as exc:
            errors["endpoint_region"] = [str(exc)]
    if errors:
        raise ValidationFailed(_("The provider was not saved."), errors)
    return clean


def _audit(action: str, config: LlmProviderConfig, *, tenant: Tenant, actor: Any, request: Any) -> None:
    audit_record(
        action,
        tenant=tenant,
        actor=actor,
        request=request,
        target_type="llm_provider",
        target_id=str(config.pk),
        target_label=config.name,
        changes={f: str(getattr(config, f)) for f in FIELDS}
        | {"api_key": "set" if config.api_key else "not set", "api_key_entered_for": config.api_key_origin},
    )


def llm_provider_save(
    *,
    tenant: Tenant,
    data: dict[str, Any],
    api_key: str | None = None,
    config: LlmProviderConfig | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> LlmProviderConfig:
    """Create (config=None) or update a provider. `api_key=None` keeps the stored key; "" clears it.

    The key is bound to the base URL's origin: moving the base URL to another origin needs the key again in
    the same change, so a stored key is never sent to a host it was not entered for.
    """
    require_channel_manager(tenant=tenant, actor=actor)
    clean = _clean(tenant=tenant, data=data)
    with tenant_context(tenant):
        target = config or LlmProviderConfig()
        old_regions = [target.region] if config else []
        origin = url_origin(clean["base_url"])
        if config is not None and api_key is None and config.api_key and origin != config.api_key_origin:
            message = _(
                "The base URL moved to another address: enter the API key again for it (a stored key is "
                "never sent to another host)."
            )
            audit_record(
                "chat.llm_provider_repoint_refused",
                tenant=tenant,
                actor=actor,
                request=request,
                target_type="llm_provider",
                target_id=str(config.pk),
                target_label=config.name,
                changes={"entered_for": config.api_key_origin, "requested": origin},
                outcome=Outcome.DENIED,
            )
            raise ValidationFailed(_("The provider was not saved."), {"api_key": [message]})
        for name, value in clean.items():
            setattr(target, name, value)
        if api_key is not None:
            target.api_key = api_key.strip() or None
        target.api_key_origin = origin if target.api_key else ""
        try:
            with transaction.atomic(using=as_ref(tenant).db_alias):
                target.save()
        except IntegrityError:
            raise ValidationFailed(
                _("The provider was not saved."), {"name": [_("A provider with this name exists.")]}
            ) from None
        _audit(
            "chat.llm_provider_updated" if config else "chat.llm_provider_created",
            target, tenant=tenant, actor=actor, request=request,
        )  # fmt: skip
    provider_config_changed(tenant_id=tenant.id, regions=[*old_regions, target.region])
    return target


def llm_provider_delete(
    *, tenant: Tenant, config: LlmProviderConfig, actor: Any = None, request: HttpRequest | None = None
) -> None:
    require_channel_manager(tenant=tenant, actor=actor)
    with tenant_context(tenant):
        _audit("chat.llm_provider_deleted", config, tenant=tenant, actor=actor, request=request)
        region = config.region
        config.delete()
    provider_config_changed(tenant_id=tenant.id, regions=[region])
