"""The cross-tenant sweep: every console URL and API endpoint of tenant A, requested by charlie (tenant B).

It walks the URL configuration, so endpoints added later are swept automatically. A URL with a path
parameter other than the tenant slug needs an entry in OBJECT_KWARGS (how to find one of tenant A's objects
for it); the sweep fails on unknown parameters so nobody forgets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

from apps.tenants.models import Invitation, ManagementToken, Membership, Tenant

TENANT_KWARGS = ("tenant_slug",)


def _scim_token_pk(tenant: Tenant) -> Any:
    """One of tenant A's SCIM tokens (issue 19)."""
    from apps.accounts.models import ScimToken
    from apps.accounts.services.scim import scim_token_create

    existing = ScimToken.objects.filter(tenant=tenant).first()
    return (existing or scim_token_create(tenant=tenant, name="sweep", expires_at=None, actor=None)[0]).pk


def _dsr_pk(tenant: Tenant) -> Any:
    """One of tenant A's data-subject requests (issue 22), registered on first use."""
    from apps.core.context import tenant_context
    from apps.policies.dsr import dsr_create
    from apps.policies.models import DataSubjectRequest

    with tenant_context(tenant):
        existing = DataSubjectRequest.objects.first()
    return (existing or dsr_create(tenant=tenant, kind="access", email="sweep@example.test", actor=None)).pk


def _dsr_with_archive_pk(tenant: Tenant) -> Any:
    """One of tenant A's access requests whose archive was built (issue 22, dsrapi: the download is a 200)."""
    from apps.core.context import tenant_context
    from apps.policies.dsr import dsr_archive_build, dsr_create
    from apps.policies.models import DataSubjectRequest, RequestStatus

    with tenant_context(tenant):
        existing = DataSubjectRequest.objects.filter(archive__isnull=False).first()
    if existing is not None:
        return existing.pk
    dsr = dsr_create(tenant=tenant, kind="access", email="sweep@example.test", actor=None)
    with tenant_context(tenant):  # started without queueing the build task: the sweep builds it here
        DataSubjectRequest.objects.filter(pk=dsr.pk).update(status=RequestStatus.IN_PROGRESS)
    dsr_archive_build(tenant=tenant, request_id=dsr.pk)
    return dsr.pk


def _connection_pk(tenant: Tenant) -> Any:
    """One of tenant A's connections (created on first use; no vendor is called)."""
    from apps.core.context import tenant_context
    from apps.integrations.models import Connection
    from tests.fixtures.integrations import offline_connection

    with tenant_context(tenant):
        existing = Connection.objects.first()
    if existing is None:
        existing = offline_connection(tenant, "servicenow", name="sweep")
    return existing.pk


def _sync_run_pk(tenant: Tenant) -> Any:
    """One of tenant A's sync runs (queued, never run), on the sweep connection."""
    from apps.core.context import tenant_context
    from apps.integrations.models import SyncRun

    connection_pk = _connection_pk(tenant)
    with tenant_context(tenant):
        run = SyncRun.objects.filter(connection_id=connection_pk).first()
        if run is None:
            run = SyncRun.objects.create(connection_id=connection_pk, stream="contacts", trigger="manual")
    return run.pk


def _dead_letter_pk(tenant: Tenant) -> Any:
    """One of tenant A's dead letters (a sync one, on the sweep run)."""
    from apps.core.context import tenant_context
    from apps.integrations.models import DeadLetter, DeadLetterKind

    run_pk = _sync_run_pk(tenant)
    with tenant_context(tenant):
        letter = DeadLetter.objects.first()
        if letter is None:
            letter = DeadLetter.objects.create(
                kind=DeadLetterKind.SYNC,
                connection_id=_connection_pk(tenant),
                stream="contacts",
                sync_run_id=run_pk,
            )
    return letter.pk


def _knowledge_translation(tenant: Tenant) -> Any:
    """One of tenant A's knowledge texts (a knowledge base with one English draft, created on first use)."""
    from apps.core.context import tenant_context
    from apps.knowledge.models import Translation
    from apps.knowledge.services import kb_create, translation_save

    with tenant_context(tenant):
        existing = Translation.objects.select_related("article").first()
        if existing is None:
            kb = kb_create(tenant=tenant, name="sweep", source_locale="en")
            existing = translation_save(kb=kb, key="sweep", locale="en", title="Sweep", body="Sweep.")
    return existing


def _article_kwargs(tenant: Tenant) -> dict[str, Any]:
    translation = _knowledge_translation(tenant)
    return {"kb_id": translation.article.kb_id, "key": translation.article.key}


def _xliff_import_kwargs(tenant: Tenant) -> dict[str, Any]:
    """One of tenant A's XLIFF imports (created on first use; its file is never applied here)."""
    from apps.core.context import tenant_context
    from apps.knowledge.models import XliffImport

    kb_id = _article_kwargs(tenant)["kb_id"]
    with tenant_context(tenant):
        job = XliffImport.objects.filter(kb_id=kb_id).first() or XliffImport.objects.create(
            kb_id=kb_id, locale="de", filename="sweep.xlf", content=b"<xliff/>"
        )
    return {"kb_id": kb_id, "import_id": job.pk}


def _channel_and_key(tenant: Tenant) -> tuple[Any, Any]:
    """One of tenant A's chat channels and one of its API keys (created on first use)."""
    from apps.chat.models import ApiKey, Channel
    from apps.chat.services.channels import api_key_create, channel_create

    channel = Channel.objects.filter(tenant=tenant).first() or channel_create(tenant=tenant, name="sweep")
    key = ApiKey.objects.filter(channel=channel).first() or api_key_create(channel=channel, name="sweep")[0]
    return channel.pk, key.pk


def _conversation_pk(tenant: Tenant) -> Any:
    """One of tenant A's conversations (on the sweep channel)."""
    from apps.chat.models import Conversation
    from apps.core.context import tenant_context

    channel_pk = _channel_and_key(tenant)[0]
    with tenant_context(tenant):
        conversation = Conversation.objects.first() or Conversation.objects.create(
            channel_id=channel_pk, channel_kind="web", locale="en", region=tenant.region_code
        )
    return conversation.pk


def _llm_provider_pk(tenant: Tenant) -> Any:
    """One of tenant A's language-model providers (never called by the sweep)."""
    from apps.chat.models import LlmProviderConfig
    from apps.core.context import tenant_context

    with tenant_context(tenant):
        config = LlmProviderConfig.objects.first() or LlmProviderConfig.objects.create(
            name="sweep", endpoint_region=tenant.region_code, base_url="https://llm.example/v1", model="m"
        )
    return config.pk


def _business_hours_pk(tenant: Tenant) -> Any:
    """One of tenant A's business hours (created on first use)."""
    from apps.chat.models import BusinessHours

    hours = BusinessHours.objects.filter(tenant=tenant).first() or BusinessHours.objects.create(
        tenant=tenant, name="sweep", timezone="Europe/Berlin", weekly={"mon": [["09:00", "17:00"]]}
    )
    return hours.pk


def _handoff_route_pk(tenant: Tenant) -> Any:
    """One of tenant A's handoff routes (to the sweep connection, created on first use)."""
    from apps.chat.models import HandoffRoute

    route = HandoffRoute.objects.filter(tenant=tenant).first() or HandoffRoute.objects.create(
        tenant=tenant, name="sweep", connection_id=_connection_pk(tenant)
    )
    return route.pk


def _sso_pks(tenant: Tenant) -> dict[str, Any]:
    """One of tenant A's identity providers, SSO domains and role mappings (created on first use)."""
    from apps.accounts.models import IdentityProvider, RoleMapping, SsoDomain

    provider = IdentityProvider.objects.filter(tenant=tenant).first() or IdentityProvider.objects.create(
        tenant=tenant, name="sweep", protocol="oidc", oidc_discovery_url="https://idp.example.com/x"
    )
    domain = SsoDomain.objects.filter(tenant=tenant).first() or SsoDomain.objects.create(
        tenant=tenant, identity_provider=provider, domain="sweep.example", verification_token="t"
    )
    mapping = RoleMapping.objects.filter(tenant=tenant).first() or RoleMapping.objects.create(
        tenant=tenant, group="sweep", role="viewer"
    )
    return {"provider": provider.pk, "domain": domain.pk, "mapping": mapping.pk}


def _siem_destination_pk(tenant: Tenant) -> Any:
    """One of tenant A's SIEM destinations (issue 22), to a loopback port nobody listens on."""
    from apps.core.context import tenant_context
    from apps.siem.models import SiemDestination, SiemKind

    with tenant_context(tenant):
        existing = SiemDestination.objects.first()
        if existing is None:
            existing = SiemDestination.objects.create(
                name="sweep", kind=SiemKind.SYSLOG_TLS, host="127.0.0.1", port=9, enabled=False
            )
    return existing.pk


# url name -> function(tenant A) -> kwargs naming one of tenant A's objects
OBJECT_KWARGS: dict[str, Callable[[Tenant], dict[str, Any]]] = {
    "tenants:member-edit": lambda t: {"pk": Membership.objects.filter(tenant=t).first().pk},  # type: ignore[union-attr]
    "tenants:member-remove": lambda t: {"pk": Membership.objects.filter(tenant=t).first().pk},  # type: ignore[union-attr]
    "accounts:member-unlock": lambda t: {"pk": Membership.objects.filter(tenant=t).first().pk},  # type: ignore[union-attr]
    "tenants:invitation-revoke": lambda t: {"pk": Invitation.objects.filter(tenant=t).first().pk},  # type: ignore[union-attr]
    "tenants:api-token-revoke": lambda t: {"pk": ManagementToken.objects.filter(tenant=t).first().pk},  # type: ignore[union-attr]
    "accounts:scim-token-revoke": lambda t: {"pk": _scim_token_pk(t)},
    "audit:event-detail": lambda t: {"seq": 1},  # tenant creation always writes event #1
    **{
        f"integrations:connection-{name}": lambda t: {"pk": _connection_pk(t)}
        for name in ("edit", "test", "enable", "field-map", "delete", "grant", "revoke")
    },
    **{
        f"integrations:sync-{name}": lambda t: {"pk": _connection_pk(t), "stream": "contacts"}
        for name in ("stream", "now", "backfill", "pause", "resume", "schedule")
    },
    **{
        f"integrations:sync-{name}": lambda t: {"pk": _connection_pk(t)}
        for name in ("webhooks", "webhook-rotate", "webhook-org")
    },
    "integrations:sync-run": lambda t: {"run_id": _sync_run_pk(t)},
    **{
        f"integrations:deadletter-{name}": lambda t: {"pk": _dead_letter_pk(t)}
        for name in ("detail", "replay", "discard")
    },
    "knowledge:kb-detail": lambda t: {"kb_id": _article_kwargs(t)["kb_id"]},
    "knowledge:kb-import-connection": lambda t: {"kb_id": _article_kwargs(t)["kb_id"]},
    "knowledge:learning": lambda t: {"kb_id": _article_kwargs(t)["kb_id"]},
    "knowledge:learning-attach": lambda t: {"kb_id": _article_kwargs(t)["kb_id"]},
    "knowledge:learning-dismiss": lambda t: {"kb_id": _article_kwargs(t)["kb_id"]},
    "knowledge:learning-create": lambda t: {"kb_id": _article_kwargs(t)["kb_id"]},
    "knowledge:article": _article_kwargs,
    "knowledge:review-approve": lambda t: {"pk": _knowledge_translation(t).pk},
    **{
        f"chat:channel-{name}": lambda t: {"pk": _channel_and_key(t)[0]}
        for name in ("detail", "enable", "key-create")
    },
    # Issue 17 (chanconsole): a channel's setup pages.
    **{
        f"chat:channel-{name}": lambda t: {"pk": _channel_and_key(t)[0]}
        for name in (
            "platform",
            "platform-test",
            "origins",
            "identity",
            "identity-secret",
            "widget-rotate",
            "preview",
            "undelivered-retry",  # issue 18 (delivery): send held messages again
        )
    },
    **{f"chat:key-{name}": lambda t: {"pk": _channel_and_key(t)[1]} for name in ("revoke", "rotate")},
    "knowledge:review-reject": lambda t: {"pk": _knowledge_translation(t).pk},
    "chat:conversation-detail": lambda t: {"pk": _conversation_pk(t)},
    **{f"chat:llm-provider-{name}": lambda t: {"pk": _llm_provider_pk(t)} for name in ("edit", "delete")},
    "knowledge:editor": lambda t: {**_article_kwargs(t), "locale": _knowledge_translation(t).locale},
    # Issue 18 (routing): routes and business hours.
    **{f"chat:route-{name}": lambda t: {"pk": _handoff_route_pk(t)} for name in ("edit", "delete", "move")},
    **{f"chat:hours-{name}": lambda t: {"pk": _business_hours_pk(t)} for name in ("edit", "delete")},
    # Issue 21 (helpcenter): a knowledge base's help center settings.
    "helpcenter:kb-settings": lambda t: {"kb_id": _article_kwargs(t)["kb_id"]},
    # Issue 19 (config): a tenant's SSO setup.
    **{
        f"sso-config:provider-{name}": lambda t: {"pk": _sso_pks(t)["provider"]}
        for name in ("edit", "check", "delete")
    },
    **{
        f"sso-config:domain-{name}": lambda t: {"pk": _sso_pks(t)["domain"]}
        for name in ("detail", "verify", "mark-verified", "delete")
    },
    **{
        f"sso-config:mapping-{name}": lambda t: {"pk": _sso_pks(t)["mapping"]}
        for name in ("edit", "delete", "move")
    },
    # Issue 21 (xliff): exchange with translators.
    **{
        f"knowledge:{name}": lambda t: {"kb_id": _article_kwargs(t)["kb_id"]}
        for name in ("xliff", "xliff-export")
    },
    # Issue 21 (xliff2): an XLIFF import's page.
    "knowledge:xliff-import": lambda t: _xliff_import_kwargs(t),
    # Issue 22 (siem): a SIEM destination's pages.
    **{
        f"siem:destination-{name}": lambda t: {"pk": _siem_destination_pk(t)}
        for name in ("edit", "toggle", "delete", "test")
    },
    # Issue 22 (dsr): a data-subject request's pages and actions.
    **{
        f"policies:dsr-{name}": lambda t: {"pk": _dsr_pk(t)}
        for name in ("detail", "start", "extend", "reject", "handle", "download")
    },
}


@dataclass(frozen=True)
class TenantUrl:
    name: str
    route: str
    kwargs: tuple[str, ...]


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[TenantUrl]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = namespace
            if entry.namespace:
                ns = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            route = prefix + str(entry.pattern)
            kwargs = tuple(entry.pattern.converters) if hasattr(entry.pattern, "converters") else ()
            regex_kwargs = tuple(entry.pattern.regex.groupindex)
            names = tuple(dict.fromkeys([*kwargs, *regex_kwargs, *_prefix_kwargs(prefix)]))
            if any(k in TENANT_KWARGS for k in names) and entry.name:
                full = f"{namespace}:{entry.name}" if namespace else entry.name
                yield TenantUrl(full, route, names)


def _prefix_kwargs(prefix: str) -> list[str]:
    import re

    return re.findall(r"<(?:\w+:)?(\w+)>", prefix)


def tenant_urls() -> list[TenantUrl]:
    """Every named URL whose path carries a tenant slug."""
    return list(_walk(get_resolver().url_patterns))


def kwargs_for(url: TenantUrl, tenant: Tenant) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"tenant_slug": tenant.slug}
    others = [k for k in url.kwargs if k not in TENANT_KWARGS]
    if others:
        if url.name not in OBJECT_KWARGS:
            raise AssertionError(
                f"{url.name} ({url.route}) has parameters {others}: add it to tests/sweep.py OBJECT_KWARGS"
            )
        kwargs.update(OBJECT_KWARGS[url.name](tenant))
    return kwargs


# --- Issue 21 (helpcenter): the public pages name the tenant `org` (no login); walked the same way. ---------
PUBLIC_TENANT_KWARGS = ("org",)


def public_urls() -> list[TenantUrl]:
    """Every named URL of the public help center (its path names a tenant as `org`)."""
    return [url for url in _walk_public(get_resolver().url_patterns) if "org" in url.kwargs]


def _walk_public(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[TenantUrl]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = (
                f"{namespace}:{entry.namespace}"
                if namespace and entry.namespace
                else entry.namespace or namespace
            )
            yield from _walk_public(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern) and entry.name:
            route = prefix + str(entry.pattern)
            names = tuple(_prefix_kwargs(route))
            yield TenantUrl(f"{namespace}:{entry.name}" if namespace else entry.name, route, names)


def public_kwargs_for(
    url: TenantUrl, *, org: str, handle: str, key: str, locale: str = "en"
) -> dict[str, Any]:
    """Path parameters naming tenant `org`'s help center `handle` (and an article `key` in `locale`)."""
    values = {"org": org, "handle": handle, "locale": locale, "key": key}
    unknown = [k for k in url.kwargs if k not in values]
    if unknown:
        raise AssertionError(
            f"{url.name} ({url.route}) has parameters {unknown}: add them to public_kwargs_for"
        )
    return {k: values[k] for k in url.kwargs}
