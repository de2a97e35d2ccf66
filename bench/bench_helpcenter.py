"""The public help center under load, next to the trivial API endpoint and the knowledge search itself.

Issue 21's targets: the public article page serves at least 50 % of the requests/s of the trivial API
endpoint, and the help center's search page stays within 1.3x of the knowledge search it runs.

Set-up: bench/bench_chat.py's (the demo help center enlarged to BENCH_CHAT_ARTICLES articles, a web channel
and an API key), the help center switched on for that knowledge base; the same production gunicorn
(bench_chat.Server: hub.settings.production, 2 x cores + 1 sync workers, HUB_BENCH_ENDPOINTS=1).

Phases, BENCH_CHAT_CLIENTS (32) clients each, BENCH_CHAT_SECONDS each, in this order so that the machine's
other work spreads over all of them alike (`trivial` runs again at the end; the mean of both is the base):
1. `trivial`: GET /api/v1/bench/ping (API key, throttles, nothing else);
2. `article_page`: GET the public article page of a random demo article in a random published locale
   (what a customer opening a citation gets; cached per knowledge version, so mostly cache hits, as in life);
3. `article_page_uncached`: the same with the page cache off (HUB_HELPCENTER_CACHE_SECONDS=0, a server of
   its own): every request renders the page from the database (the synthetic articles have no published
   revision, so they are not pages; the demo's are what a first visitor after a publish gets);
4. `search_api`: GET /api/v1/bench/search?q=… — knowledge_search for the channel's knowledge base as JSON;
5. `search_page`: GET the help center's search page with the same kind of query (a fresh one each time: an
   evaluation question plus two random words and a made-up one, so no cache can answer it);
6. `trivial` again.
"""

from __future__ import annotations

import asyncio
import os
import random
import string
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench import bench_chat as chat

CLIENTS = chat.CLIENTS
SECONDS = chat.SECONDS
WARMUP_SECONDS = chat.WARMUP_SECONDS


def _fresh_query(locale: str, rng: random.Random, questions: dict[str, list[str]]) -> str:
    topic = rng.sample(chat._TOPICS[locale], 2)
    made_up = "".join(rng.choice(string.ascii_lowercase) for _ in range(7))
    return f"{rng.choice(questions[locale])} {' '.join(topic)} {made_up}"


async def _phase(
    port: int, seconds: float, pick: Callable[[random.Random], tuple[str, dict[str, str]]]
) -> dict[str, Any]:
    samples: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def client(i: int) -> None:
        conn = chat.Conn("127.0.0.1", port)
        rng = random.Random(i * 104729 + int(time.time()))
        try:
            while time.perf_counter() < deadline:
                path, headers = pick(rng)
                t0 = time.perf_counter()
                status, data = await conn.request("GET", path, headers=headers)
                ms = (time.perf_counter() - t0) * 1000
                statuses[status] += 1
                if status != 200:
                    errors.append(f"{status} {path} {data[:120]!r}")
                    continue
                samples.append(ms)
        finally:
            conn.close()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    elapsed = time.perf_counter() - started
    result = chat._summary(samples, elapsed)
    result["client_cpu_pct"] = round(100 * (time.process_time() - cpu) / elapsed, 1)
    result["statuses"] = dict(statuses)
    if errors:
        result["errors_sample"] = errors[:5]
    return result


def _load(
    server: Any, seconds: float, pick: Callable[[random.Random], tuple[str, dict[str, str]]]
) -> dict[str, Any]:
    web_before, db_before = chat._cpu_seconds([server.proc.pid]), chat._cpu_seconds(chat._service_pids())
    result = asyncio.run(_phase(server.port, seconds, pick))
    web = chat._cpu_used(web_before, chat._cpu_seconds([server.proc.pid]))
    db = chat._cpu_used(db_before, chat._cpu_seconds(chat._service_pids()))
    n = max(1, result.get("n", 0))
    result["web_cpu_ms_per_request"] = round(1000 * web / n, 2)
    result["db_redis_cpu_ms_per_request"] = round(1000 * db / n, 2)
    return result


def _server(**env: str) -> Any:
    """bench_chat's production gunicorn; the help center's search limit per client address is raised (every
    bench client comes from 127.0.0.1)."""
    server = chat.Server(metrics=True)
    server.env.update({"HUB_HELPCENTER_SEARCH_RATE": "1000000/s", **env})
    return server


def _help_center(tenant: Any, kb_id: Any) -> dict[str, Any]:
    """Switch the help center on; the public URLs the phases ask for."""
    from django.urls import reverse

    from apps.core.context import tenant_context
    from apps.knowledge.demo import DEMO_KB
    from apps.knowledge.models import KnowledgeBase, Status, Translation
    from apps.knowledge.services import kb_update

    with tenant_context(tenant):
        kb = KnowledgeBase.objects.get(pk=kb_id)
        kb = kb_update(kb=kb, helpcenter_enabled=True, helpcenter_handle="bench")
        # The demo's published texts (the synthetic articles have no published revision: not pages).
        pairs = list(
            Translation.objects.filter(article__kb=kb, status=Status.PUBLISHED, region="")
            .exclude(article__key__startswith="syn-")
            .values_list("article__key", "locale")
        )
    kwargs = {"org": tenant.slug, "handle": kb.helpcenter_handle}

    def article(key: str, locale: str) -> str:
        return reverse("helpcenter:article", kwargs={**kwargs, "locale": locale, "key": key})

    def search(locale: str, query: str) -> str:
        base = reverse("helpcenter:search", kwargs={**kwargs, "locale": locale})
        return f"{base}?{urllib.parse.urlencode({'q': query})}"

    demo_pages = [article(key, locale) for key, locale in pairs]
    return {
        "info": {"demo_pages": len(demo_pages), "demo_kb": DEMO_KB},
        "demo_articles": demo_pages,
        "search": search,
    }


def run() -> dict[str, Any]:
    sys.path.insert(0, str(chat.ROOT))
    chat._setup_django()
    result: dict[str, Any] = {
        "clients": CLIENTS,
        "seconds_per_phase": SECONDS,
        "workers": chat.WORKERS,
        "cores": os.cpu_count(),
        "load_average_before": chat._loadavg(),
    }
    prepared = chat._prepare()
    tenant, key = prepared["tenant"], prepared["key"]
    result["setup"] = prepared["info"]
    questions = chat._questions()
    auth = {"Authorization": f"Bearer {key}"}
    try:
        site = _help_center(tenant, prepared["channel"].knowledge_base_id)
        result["setup"]["help_center"] = site["info"]

        def trivial(rng: random.Random) -> tuple[str, dict[str, str]]:
            return "/api/v1/bench/ping", auth

        def article(rng: random.Random) -> tuple[str, dict[str, str]]:
            return rng.choice(site["demo_articles"]), {}

        def search_api(rng: random.Random) -> tuple[str, dict[str, str]]:
            locale = rng.choice(chat.LOCALES)
            query = urllib.parse.urlencode({"q": _fresh_query(locale, rng, questions), "locale": locale})
            return f"/api/v1/bench/search?{query}", auth

        def search_page(rng: random.Random) -> tuple[str, dict[str, str]]:
            locale = rng.choice(chat.LOCALES)
            return site["search"](locale, _fresh_query(locale, rng, questions)), {}

        with _server() as server:
            _load(server, WARMUP_SECONDS, search_api)  # connections, the embedding model, caches
            _load(server, WARMUP_SECONDS / 2, article)
            result["trivial"] = _load(server, SECONDS, trivial)
            result["article_page"] = _load(server, SECONDS, article)
            result["search_api"] = _load(server, SECONDS, search_api)
            result["search_page"] = _load(server, SECONDS, search_page)
            result["trivial_again"] = _load(server, SECONDS, trivial)
        with _server(HUB_HELPCENTER_CACHE_SECONDS="0") as server:
            _load(server, WARMUP_SECONDS / 2, article)
            result["article_page_uncached"] = _load(server, SECONDS, article)
        result["load_average_after"] = chat._loadavg()
    finally:
        chat._cleanup(tenant)
    trivial_rps = (result["trivial"].get("rps", 0) + result["trivial_again"].get("rps", 0)) / 2 or 1
    api, page = result["search_api"], result["search_page"]
    result["ratios"] = {
        "article_page_rps_over_trivial": round(result["article_page"].get("rps", 0) / trivial_rps, 3),
        "article_page_uncached_rps_over_trivial": round(
            result["article_page_uncached"].get("rps", 0) / trivial_rps, 3
        ),
        "search_page_p50_over_search": round(page.get("p50_ms", 0) / (api.get("p50_ms") or 1), 3),
        "search_page_p99_over_search": round(page.get("p99_ms", 0) / (api.get("p99_ms") or 1), 3),
        "search_rps_over_search_page": round(api.get("rps", 0) / (page.get("rps") or 1), 3),
    }
    ratios = result["ratios"]
    result["targets"] = {"article_page_rps_over_trivial": 0.5, "search_page_over_search": 1.3}
    result["meets_targets"] = {
        "article_page": ratios["article_page_rps_over_trivial"] >= 0.5,
        "search_page": max(ratios["search_page_p99_over_search"], ratios["search_rps_over_search_page"])
        <= 1.3,
    }
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
