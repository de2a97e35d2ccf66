"""Reading the public help center: which site a request names, and the published text its pages show.

Only published revisions are read (`published_revision` of a text that is not archived): a draft, a text in
review or a rejected one shows its last published revision if it has one, and nothing otherwise. Everything a
page needs first (the tenant, the site, its locales and regions) comes from the shared cache, keyed by the
tenant's knowledge version (apps/knowledge/version.py), so a cached page costs no database query.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q

from apps.core.context import TenantRef, tenant_context
from apps.helpcenter.models import HelpCenterDomain
from apps.knowledge.content import markdown_html
from apps.knowledge.models import KnowledgeBase, Status, Translation
from apps.knowledge.selectors import knowledge_search, normalize_locale, normalize_region
from apps.knowledge.version import knowledge_cached_versioned, knowledge_version
from apps.tenants.models import Tenant

#: Seconds a tenant or custom-domain lookup stays cached (a suspended tenant's help center closes within it).
LOOKUP_SECONDS = 60
SEARCH_HITS = 10
_LIVE = Q(published_revision__isnull=False) & ~Q(status=Status.ARCHIVED)
_HEADING = re.compile(r"<(/?)h([1-5])>")


@dataclass(frozen=True)
class Site:
    """One knowledge base's help center, as every page of it needs it."""

    tenant: TenantRef
    tenant_name: str
    kb_id: str
    handle: str
    name: str
    source_locale: str
    #: Locales with published text, the source locale first (those the URLs accept).
    locales: tuple[str, ...]
    #: Regions the tenant configured for this base that have a published variant (the region switcher's).
    regions: tuple[str, ...]
    #: Path prefix of its pages: "/help/<tenant>/<handle>" on the hub's host, "" on a custom domain.
    prefix: str = ""
    #: The tenant's knowledge version the site was read under: the pages' cache keys carry it.
    version: int = 0
    #: Its custom domain, if an operator configured one: canonical URLs point there.
    domain: str = ""

    def chain(self, locale: str) -> list[str]:
        """Locales a page in `locale` may show, most preferred first: fr-CA → fr → fallback → source."""
        base = locale.split("-", 1)[0]
        wanted = [locale, base, settings.HUB_KNOWLEDGE_FALLBACK_LOCALE, self.source_locale]
        return [loc for loc in dict.fromkeys(wanted) if loc in self.locales]


@dataclass
class ArticleText:
    key: str
    locale: str
    region: str
    title: str
    html: str = ""
    tags: list[str] = field(default_factory=list)


def tenant_ref(*, slug: str) -> tuple[TenantRef, str] | None:
    """An active tenant by slug, with its name; cached briefly (no query per page)."""
    key = tenant_cache_key(slug)
    found = cache.get(key)
    if found is None:
        tenant = Tenant.objects.select_related("home_region").filter(slug=slug, is_active=True).first()
        found = (tenant.id, tenant.slug, tenant.region_code, tenant.name) if tenant else ()
        cache.set(key, found, timeout=LOOKUP_SECONDS)
    if not found:
        return None
    return TenantRef(id=found[0], slug=found[1], region=found[2]), found[3]


def tenant_cache_key(slug: str) -> str:
    """Where tenant_ref caches a slug: (id, slug, region, name), or () for no active tenant."""
    return f"helpcenter:tenant:{slug}"


def domain_lookup(*, host: str) -> tuple[str, str] | None:
    """(tenant slug, knowledge base id) a custom domain serves, or None; cached (services forget it)."""
    key = domain_cache_key(host)
    found = cache.get(key)
    if found is None:
        row = (
            HelpCenterDomain.objects.filter(host=host, tenant__is_active=True)
            .values_list("tenant__slug", "kb_id")
            .first()
        )
        found = (row[0], str(row[1])) if row else ()
        cache.set(key, found, timeout=LOOKUP_SECONDS)
    return (found[0], found[1]) if found else None


def domain_cache_key(host: str) -> str:
    return f"helpcenter:host:{host}"


def _sites(ref: TenantRef) -> tuple[int, dict[str, dict[str, Any]]]:
    """The knowledge version and the tenant's help centers by handle (and by knowledge base id), cached per
    knowledge version: one cache round trip."""

    def load() -> dict[str, dict[str, Any]]:
        with tenant_context(ref):
            kbs = list(
                KnowledgeBase.objects.filter(helpcenter_enabled=True)
                .exclude(helpcenter_handle="")
                .values("id", "name", "helpcenter_handle", "source_locale", "enabled_locales", "regions")
            )
            texts = set(
                Translation.objects.filter(_LIVE, article__kb_id__in=[kb["id"] for kb in kbs])
                .values_list("article__kb_id", "locale", "region")
                .distinct()
            )
        domains = {
            str(kb_id): host
            for kb_id, host in HelpCenterDomain.objects.filter(tenant_id=ref.id).values_list("kb_id", "host")
        }
        sites: dict[str, dict[str, Any]] = {}
        for kb in kbs:
            ordered = [kb["source_locale"], *kb["enabled_locales"]]
            live = {(loc, reg) for kb_id, loc, reg in texts if kb_id == kb["id"]}
            site: dict[str, Any] = {
                "kb_id": str(kb["id"]),
                "handle": kb["helpcenter_handle"],
                "name": kb["name"],
                "source_locale": kb["source_locale"],
                "locales": tuple(dict.fromkeys(loc for loc in ordered if any(loc == x for x, _r in live))),
                "regions": tuple(r for r in kb["regions"] if any(reg == r for _l, reg in live)),
                "domain": domains.get(str(kb["id"]), ""),
            }
            sites[site["handle"]] = site
            sites[site["kb_id"]] = site
        return sites

    return knowledge_cached_versioned(tenant_id=ref.id, name="helpcenter-sites-2", load=load)


def site_get(*, slug: str, handle: str, prefix: str | None = None) -> Site | None:
    """The help center `handle` (or knowledge base id, for custom domains) of tenant `slug`, if it is on."""
    found = tenant_ref(slug=slug)
    if found is None:
        return None
    ref, tenant_name = found
    version, sites = _sites(ref)
    data = sites.get(handle)
    if data is None or not data["locales"]:
        return None
    if prefix is None:
        prefix = f"/help/{ref.slug}/{data['handle']}"
    return Site(tenant=ref, tenant_name=tenant_name, prefix=prefix, version=version, **data)


def page_current(*, tenant_id: int, version: int) -> bool:
    """Whether a page cached under `version` still shows the tenant's current knowledge."""
    return knowledge_version(tenant_id=tenant_id) == version


def site_region(site: Site, value: str | None) -> str:
    """A region the visitor chose, if this site serves it; "" (the generic text) otherwise."""
    region = normalize_region(value)
    return region if region in site.regions else ""


def site_locale(site: Site, value: str) -> str | None:
    """The URL's locale if the site has published text in it (normalized: "DE" is "de"), else None."""
    locale = normalize_locale(value)
    return locale if locale == value and locale in site.locales else None


def _preference(site: Site, locale: str, region: str) -> list[tuple[str, str]]:
    """(locale, region) of the texts a page may show, best first: the variant before the generic text."""
    order: list[tuple[str, str]] = []
    for loc in site.chain(locale):
        if region:
            order.append((loc, region))
        order.append((loc, ""))
    return order


def _body_html(body: str) -> str:
    """The sanitised HTML of a body, its headings one level down (the page's h1 is the title)."""
    return _HEADING.sub(lambda m: f"<{m.group(1)}h{int(m.group(2)) + 1}>", markdown_html(body))


def article_get(*, site: Site, key: str, locale: str, region: str) -> tuple[ArticleText, list[str]] | None:
    """The published text an article page shows (best in the visitor's preference) and the locales the
    article is published in (its hreflang alternates); None when it has no published text here."""
    order = _preference(site, locale, region)
    with tenant_context(site.tenant):
        rows = list(
            Translation.objects.filter(_LIVE, article__kb_id=uuid.UUID(site.kb_id), article__key=key)
            .filter(Q(region="") | Q(region=region))
            .values_list(
                "locale",
                "region",
                "published_revision__title",
                "published_revision__body",
                "published_revision__tags",
            )
        )
    by_pref = {(loc, reg): (title, body, tags) for loc, reg, title, body, tags in rows}
    for loc, reg in order:
        if (loc, reg) in by_pref:
            title, body, tags = by_pref[(loc, reg)]
            alternates = [loc2 for loc2 in site.locales if any(x == loc2 for x, _r in by_pref)]
            text = ArticleText(key=key, locale=loc, region=reg, title=title, html=_body_html(body), tags=tags)
            return text, alternates
    return None


def article_list(*, site: Site, locale: str, region: str) -> list[ArticleText]:
    """Every article with published text, in the best text the visitor's preference has (titles only), in
    the home page's order: by category (the first tag; untagged last), then by title, so a category's
    articles stay together across the pages of the list."""
    order = _preference(site, locale, region)
    rank = {pair: i for i, pair in enumerate(order)}
    with tenant_context(site.tenant):
        rows = (
            Translation.objects.filter(
                _LIVE, article__kb_id=uuid.UUID(site.kb_id), locale__in=[p[0] for p in order]
            )
            .filter(Q(region="") | Q(region=region))
            .values_list(
                "article__key", "locale", "region", "published_revision__title", "published_revision__tags"
            )
        )
        best: dict[str, tuple[int, ArticleText]] = {}
        for key, loc, reg, title, tags in rows:
            position = rank.get((loc, reg))
            if position is None:
                continue
            if key not in best or position < best[key][0]:
                best[key] = (position, ArticleText(key=key, locale=loc, region=reg, title=title, tags=tags))
    return sorted((text for _p, text in best.values()), key=_home_order)


def _home_order(text: ArticleText) -> tuple[bool, str, str, str, str]:
    category = text.tags[0] if text.tags else ""
    return (not category, category.casefold(), category, text.title.casefold(), text.key)


def sitemap_keys(*, site: Site, locale: str) -> list[str]:
    """Keys of the articles published in `locale` itself (generic text): a sitemap lists only real pages."""
    with tenant_context(site.tenant):
        return list(
            Translation.objects.filter(_LIVE, article__kb_id=uuid.UUID(site.kb_id), locale=locale, region="")
            .order_by("article__key")
            .values_list("article__key", flat=True)
        )


@dataclass(frozen=True)
class Result:
    key: str
    locale: str
    region: str
    title: str
    text: str


def search(*, site: Site, query: str, locale: str, region: str) -> list[Result]:
    """The chat's retrieval (knowledge_search, published text only) over this site's knowledge base."""
    hits = knowledge_search(
        tenant=site.tenant, query=query, locale=locale, region=region or None, k=SEARCH_HITS, kb=site.kb_id
    )
    return [
        Result(key=h.article_key, locale=h.locale, region=h.region or "", title=h.title, text=h.text)
        for h in hits
        if h.locale in site.locales
    ]


def public_bases(tenant: TenantRef, kbs: list[tuple[str, str]]) -> dict[str, str]:
    """Where each help-center knowledge base's public pages start: its custom domain, else the public URL.

    Runs inside the knowledge search set-up (cached per knowledge version): one control-database query.
    """
    domains = {
        str(kb_id): host
        for kb_id, host in HelpCenterDomain.objects.filter(
            tenant_id=tenant.id, kb_id__in=[kb_id for kb_id, _h in kbs]
        ).values_list("kb_id", "host")
    }
    base = settings.HUB_HELPCENTER_PUBLIC_URL
    return {
        kb_id: f"https://{domains[kb_id]}" if kb_id in domains else f"{base}/help/{tenant.slug}/{handle}"
        for kb_id, handle in kbs
    }
