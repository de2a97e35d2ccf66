"""Public help center pages: no login, no session, no form that needs CSRF (search is a GET).

Thin: resolve the site (cached), read a selector, render without context processors (nothing of a visitor's
session or of the console reaches these pages). Article and home pages are cached whole in Redis under the
tenant's knowledge version, locale and region: publishing changes the version, so nothing stale is served.
Every miss is a 404 (unknown tenant, help center off, unknown locale or article, draft-only text): a visitor
cannot tell "exists but not public" from "does not exist".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import get_language_info
from django.utils.translation.trans_real import parse_accept_lang_header
from django.views.decorators.http import require_safe

from apps.core.deadlines import optional_cache
from apps.core.ratelimit import rate_bucket, rate_charge, retry_after_seconds
from apps.helpcenter import selectors as sel
from apps.helpcenter.selectors import Site
from apps.knowledge.models import key_validator
from apps.knowledge.selectors import normalize_region
from apps.observability import metrics
from apps.observability.access import client_address

REGION_COOKIE = "hc_region"
QUERY_MAX = 200
SEARCH_CACHE_SECONDS = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
View = Callable[..., HttpResponse]


# --- helpers ------------------------------------------------------------------------------------------------
def ui_language(locale: str) -> str:
    """The interface language for a page in `locale`: its base language if the hub speaks it, else English."""
    base = locale.split("-", 1)[0]
    return base if base in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def language_name(locale: str, *, local: bool = False) -> Any:
    """A locale's name in its own language (`local`) or the active one; else the code itself."""
    for code in (locale, locale.split("-", 1)[0]):
        try:
            info = get_language_info(code.lower())
        except KeyError:
            continue
        # name_translated is lazy: it is translated when the page renders, in the page's language.
        return info["name_local"] if local else info["name_translated"]
    return locale


def _page(template: str, context: dict[str, Any], *, status: int = 200, lang: str = "") -> HttpResponse:
    with translation.override(ui_language(lang or settings.LANGUAGE_CODE)):
        body = render_to_string(template, context)
    response = HttpResponse(body, status=status)
    if lang:
        response["Content-Language"] = lang
    return response


def _not_found() -> HttpResponse:
    return _page("helpcenter/404.html", {}, status=404)


def public_view(view: View) -> View:
    """GET/HEAD only; any 404 answers with the help center's own page (no console chrome).

    Every page is published text in Postgres: Redis only saves lookups and rendering. While it is down (or
    stalls past the redis_call deadline) a cache read is a miss and a write is skipped, counted as the
    "helpcenter" feature degraded, so the pages are served from the database instead of a 503.
    """

    @require_safe
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            with optional_cache("helpcenter"):
                return view(request, *args, **kwargs)
        except Http404:
            return _not_found()

    return wrapper


def _site(request: HttpRequest, org: str, handle: str) -> Site:
    """The site a request names (the custom domain's if the host middleware matched one), or 404."""
    host = getattr(request, "helpcenter_host", None)
    if host is not None:
        site = sel.site_get(slug=host[0], handle=host[1], prefix="")
    else:
        site = sel.site_get(slug=org, handle=handle)
    if site is None:
        raise Http404
    return site


def _locale(site: Site, locale: str) -> str:
    found = sel.site_locale(site, locale)
    if found is None:
        raise Http404
    return found


def _region(request: HttpRequest, site: Site) -> tuple[str, bool]:
    """The visitor's region and whether the request chose it explicitly (?region=, a citation's link).

    Only an explicit choice counts (the switcher's cookie or the link): never guessed from the address or
    language, and never a region the tenant does not serve here (then: the generic text).
    """
    if "region" in request.GET:
        return sel.site_region(site, request.GET.get("region")), True
    return sel.site_region(site, request.COOKIES.get(REGION_COOKIE)), False


def _remember_region(response: HttpResponse, prefix: str, region: str) -> None:
    response.set_cookie(
        REGION_COOKIE,
        region,
        max_age=365 * 86400,
        path=f"{prefix}/",
        samesite="Lax",
        secure=not settings.DEBUG and settings.SESSION_COOKIE_SECURE,
        httponly=True,
    )


def _absolute(request: HttpRequest, site: Site, *parts: str, region: str = "", **query: str) -> str:
    """A page's canonical absolute URL: on the site's custom domain if it has one (the same page on the hub's
    host is a duplicate search engines should not index twice), else on the request's origin."""
    if site.domain:
        return f"https://{site.domain}" + _url(replace(site, prefix=""), *parts, region=region, **query)
    return request.build_absolute_uri(_url(site, *parts, region=region, **query))


def _url(site: Site, *parts: str, region: str = "", **query: str) -> str:
    path = site.prefix + "/" + "".join(f"{p}/" for p in parts)
    params = {**({"region": region} if region else {}), **{k: v for k, v in query.items() if v}}
    return path + ("?" + urlencode(params) if params else "")


@dataclass(frozen=True)
class CachedPage:
    """Where a page is cached, and the page if the cache has it for the current knowledge version.

    Keyed by what the request says (origin, tenant, handle, page, the region it asks for), not by what it
    resolves to, so a hit needs two cache round trips and nothing else: the tenant and the page together,
    then the tenant's knowledge version (publishing, archiving or a settings change bumps it).
    """

    key: str
    prefix: str
    region_asked: str
    explicit: bool
    response: HttpResponse | None


def _cached_page(
    request: HttpRequest, org: str, handle: str, *parts: str, regional: bool = True
) -> CachedPage:
    host = getattr(request, "helpcenter_host", None)
    slug, handle = host if host is not None else (org, handle)
    prefix = "" if host is not None else f"/help/{org}/{handle}"
    explicit = regional and "region" in request.GET
    asked = ""
    if regional:
        asked = normalize_region(
            request.GET.get("region") if explicit else request.COOKIES.get(REGION_COOKIE)
        )
    raw = "|".join([str(request.scheme), request.get_host(), prefix, slug, handle, asked[:16], *parts])
    key = f"helpcenter:page:{hashlib.sha256(raw.encode()).hexdigest()[:40]}"
    found = cache.get_many([sel.tenant_cache_key(slug), key])
    tenant, entry = found.get(sel.tenant_cache_key(slug)), found.get(key)
    if tenant == ():
        raise Http404  # no such active tenant (cached)
    response = None
    if tenant and entry and entry[0] == tenant[0] and sel.page_current(tenant_id=entry[0], version=entry[1]):
        response = HttpResponse(entry[2])
        response["Content-Language"] = entry[3]
        if explicit:
            _remember_region(response, prefix, asked if asked == entry[4] else "")
    return CachedPage(key=key, prefix=prefix, region_asked=asked, explicit=explicit, response=response)


def _cache_store(
    page: CachedPage, site: Site, region: str, response: HttpResponse, *, store: bool = True
) -> HttpResponse:
    """Cache a 200 page; one for a region the site does not serve is not (garbage must not fill Redis)."""
    if store and response.status_code == 200 and page.region_asked == region:
        entry = (site.tenant.id, site.version, response.content, response["Content-Language"], region)
        cache.set(page.key, entry, timeout=settings.HUB_HELPCENTER_CACHE_SECONDS)
    if page.explicit:
        _remember_region(response, site.prefix, region)
    return response


def _common(request: HttpRequest, site: Site, locale: str, region: str) -> dict[str, Any]:
    return {
        "site": site,
        "locale": locale,
        "region": region,
        "regions": [(code, code.upper()) for code in site.regions],
        "home_url": _url(site, locale, region=region),
        "search_url": _url(site, locale, "search"),
        "region_url": _url(site, "region"),
        "next": request.get_full_path(),
    }


def _alternates(request: HttpRequest, site: Site, locales: list[str], *parts: str) -> list[dict[str, str]]:
    return [
        {
            "locale": loc,
            "name": language_name(loc, local=True),
            "href": _absolute(request, site, loc, *parts),
            "path": _url(site, loc, *parts),
        }
        for loc in locales
    ]


# --- pages --------------------------------------------------------------------------------------------------
@public_view
def site_root_view(request: HttpRequest, org: str = "", handle: str = "") -> HttpResponse:
    """Send the visitor to the site in the language their browser asks for, if it has it; else the source."""
    site = _site(request, org, handle)
    chosen = site.source_locale
    accepted = parse_accept_lang_header(request.headers.get("Accept-Language", "")[:200])
    for code, _q in accepted:
        match = next(
            (loc for loc in site.locales if loc.lower() in (code.lower(), code.split("-")[0].lower())), None
        )
        if match:
            chosen = match
            break
    response = HttpResponseRedirect(_url(site, chosen))
    response["Vary"] = "Accept-Language"
    return response


@public_view
def home_view(request: HttpRequest, locale: str, org: str = "", handle: str = "") -> HttpResponse:
    """The articles of the site in the visitor's language, a page at a time (grouped by their first tag, if
    they have tags). ?page= as the console's lists: not a number is the first page, past the end the last."""
    asked = str(request.GET.get("page", ""))[:8]
    per_page = settings.HUB_HELPCENTER_PAGE_SIZE
    cached = _cached_page(request, org, handle, "home", locale, asked, str(per_page))
    if cached.response is not None:
        return cached.response
    site = _site(request, org, handle)
    locale = _locale(site, locale)
    region, _explicit = _region(request, site)
    page = Paginator(sel.article_list(site=site, locale=locale, region=region), per_page).get_page(asked)

    def page_query(number: int) -> dict[str, str]:
        return {"region": region, "page": str(number) if number > 1 else ""}  # page 1 is the plain address

    def build() -> HttpResponse:
        groups: dict[str, list[Any]] = {}
        for text in page:
            url = _url(site, locale, "articles", text.key, region=region)
            groups.setdefault(text.tags[0] if text.tags else "", []).append((text, url))
        context = {
            **_common(request, site, locale, region),
            "groups": list(groups.items()),  # in the selector's order: by category, then title
            "has_categories": any(groups) and set(groups) != {""},
            "page_obj": page,
            "previous_url": _url(site, locale, **page_query(page.number - 1)) if page.has_previous() else "",
            "next_url": _url(site, locale, **page_query(page.number + 1)) if page.has_next() else "",
            "alternates": _alternates(request, site, list(site.locales)),
            "x_default": _absolute(request, site, site.source_locale),
            "canonical": _absolute(request, site, locale, **page_query(page.number)),
        }
        return _page("helpcenter/home.html", context, lang=locale)

    # Only the page's own address is cached (?page=abc or ?page=999 render a page, but do not fill Redis).
    canonical_page = asked in ("", str(page.number))
    return _cache_store(cached, site, region, build(), store=canonical_page)


@public_view
def article_view(
    request: HttpRequest, locale: str, key: str, org: str = "", handle: str = ""
) -> HttpResponse:
    """One article: the visitor's region's variant, else the generic text, else a fallback language (said)."""
    try:
        key_validator(key)
    except ValidationError:
        raise Http404 from None
    cached = _cached_page(request, org, handle, "article", locale, key)
    if cached.response is not None:
        return cached.response
    site = _site(request, org, handle)
    locale = _locale(site, locale)
    region, _explicit = _region(request, site)

    def build() -> HttpResponse:
        found = sel.article_get(site=site, key=key, locale=locale, region=region)
        if found is None:
            raise Http404
        text, locales = found
        shown_region = text.region
        context = {
            **_common(request, site, locale, region),
            "text": text,
            "fallback": text.locale != locale,
            "wanted_language": language_name(locale),
            "shown_language": language_name(text.locale),
            "alternates": _alternates(request, site, locales, "articles", key),
            "x_default": _absolute(
                request,
                site,
                site.source_locale if site.source_locale in locales else locales[0],
                "articles",
                key,
            ),
            "canonical": _absolute(request, site, locale, "articles", key, region=shown_region),
        }
        return _page("helpcenter/article.html", context, lang=locale)

    return _cache_store(cached, site, region, build())


def _search_allowed(request: HttpRequest) -> int:
    """0 if this client address may search now, else the seconds until it may (a Redis token bucket)."""
    bucket = rate_bucket(
        "helpcenter-rate", "visitor", client_address(request.META), settings.HUB_HELPCENTER_SEARCH_RATE
    )
    # Without Redis: open for a while, then DependencyUnavailable (503, Retry-After), like the chat's limits.
    refused, wait = rate_charge([bucket])
    if refused is None:
        return 0
    metrics.record_rate_limit_hit("helpcenter_visitor")
    return retry_after_seconds(wait)


@public_view
def search_view(request: HttpRequest, locale: str, org: str = "", handle: str = "") -> HttpResponse:
    """Search the site's published articles with the chat's retrieval; rate limited per client address."""
    site = _site(request, org, handle)
    locale = _locale(site, locale)
    region, _explicit = _region(request, site)
    # Control characters (a NUL cannot even reach Postgres) go; white space collapses.
    raw = _CONTROL.sub(" ", str(request.GET.get("q", "")))
    query = " ".join(raw.split())[:QUERY_MAX]
    context = {
        **_common(request, site, locale, region),
        "query": query,
        "alternates": [],
        "canonical": _absolute(request, site, locale, "search"),
    }
    key = ""
    if query:
        wait = _search_allowed(request)
        if wait:
            response = _page("helpcenter/429.html", {**context, "seconds": wait}, status=429, lang=locale)
            response["Retry-After"] = str(wait)
            return response
        # The same question on the same knowledge answers the same: the page is kept for a few minutes
        # under the knowledge version (a rate-limited visitor cannot fill the cache faster than they search).
        raw_key = "|".join([str(request.scheme), request.get_host(), request.get_full_path(), region, query])
        digest = hashlib.sha256(raw_key.encode()).hexdigest()
        key = f"helpcenter:search:{site.tenant.id}:{site.version}:{digest}"
        body = cache.get(key)
        if body is not None:
            response = HttpResponse(body)
            response["Content-Language"] = locale
            response["X-Robots-Tag"] = "noindex"
            return response
        results = sel.search(site=site, query=query, locale=locale, region=region)
        context["results"] = [
            {
                "result": r,
                "url": _url(site, r.locale, "articles", r.key, region=region),
                "language": language_name(r.locale) if r.locale != locale else "",
            }
            for r in results
        ]
    response = _page("helpcenter/search.html", context, lang=locale)
    response["X-Robots-Tag"] = "noindex"
    if key:
        cache.set(key, response.content, timeout=SEARCH_CACHE_SECONDS)
    return response


@public_view
def region_view(request: HttpRequest, org: str = "", handle: str = "") -> HttpResponse:
    """Remember the region the visitor chose (a GET form: no session, no CSRF) and go back to the page."""
    site = _site(request, org, handle)
    region = sel.site_region(site, request.GET.get("region"))
    target = str(request.GET.get("next") or "")
    # No page of ours has a control character or a backslash in its path; browsers read "\\" as "/" and drop
    # tabs and line breaks from URLs, so such a target is refused like one of another site.
    foreign = target.startswith("//") or "\\" in target or _CONTROL.search(target) is not None
    if not target.startswith(f"{site.prefix}/") or foreign:
        target = _url(site, site.source_locale)
    path, _sep, query = target.partition("?")
    kept = [part for part in query.split("&") if part and not part.startswith("region=")]
    response = HttpResponseRedirect(path + ("?" + "&".join(kept) if kept else ""))
    _remember_region(response, site.prefix, region)
    return response


@public_view
def sitemap_index_view(request: HttpRequest, org: str = "", handle: str = "") -> HttpResponse:
    site = _site(request, org, handle)
    urls = [_absolute(request, site, loc).rstrip("/") + "/sitemap.xml" for loc in site.locales]
    body = render_to_string("helpcenter/sitemap_index.xml", {"urls": urls})
    return HttpResponse(body, content_type="application/xml; charset=utf-8")


@public_view
def sitemap_view(request: HttpRequest, locale: str, org: str = "", handle: str = "") -> HttpResponse:
    """The articles published in one locale, each with its alternates in the other locales."""
    cached = _cached_page(request, org, handle, "sitemap", locale, regional=False)
    if cached.response is not None:
        cached.response["Content-Type"] = "application/xml; charset=utf-8"
        return cached.response
    site = _site(request, org, handle)
    locale = _locale(site, locale)

    def build() -> HttpResponse:
        keys = sel.sitemap_keys(site=site, locale=locale)
        urls = [_absolute(request, site, locale, "articles", key) for key in keys]
        body = render_to_string("helpcenter/sitemap.xml", {"urls": urls})
        response = HttpResponse(body, content_type="application/xml; charset=utf-8")
        response["Content-Language"] = locale
        return response

    return _cache_store(cached, site, "", build())


@public_view
def robots_view(request: HttpRequest, org: str = "", handle: str = "") -> HttpResponse:
    site = _site(request, org, handle)
    sitemap = _absolute(request, site) + "sitemap.xml"
    lines = ["User-agent: *", f"Disallow: {site.prefix}/*/search/", f"Sitemap: {sitemap}", ""]
    return HttpResponse("\n".join(lines), content_type="text/plain; charset=utf-8")


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 of a custom domain's unknown paths: the help center's page, not the console's."""
    return _not_found()
