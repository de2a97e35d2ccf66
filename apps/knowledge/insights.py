"""Per-article quality: which knowledge sources are underperforming (issue 21).

For each article and locale over a window (30 days by default): how often the assistant cited it, how the
customers rated those answers (thumbs up/down), how often the conversation was handed to a person after an
answer citing it, and the share of *poor* answers among its citations: rated down or followed by a handoff
(an answer counts once, even when both happened). Shown on the knowledge base page, worst first, and per
locale on the article page.

The answers live in the chat app, which sits above knowledge: chat registers a *quality source* in its
AppConfig.ready() (apps/chat/insights.py), like the learning loop's question source; this module never imports
chat. A source aggregates in the database (one query per page), so the page costs the same whatever the
number of answers; articles the assistant never cited in the window are not listed (nothing to judge).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from apps.knowledge.models import KnowledgeBase, Translation
from apps.knowledge.selectors import member_may_edit

#: The windows the pages offer, in days; the first is the default.
WINDOWS = (30, 7, 90)
#: How the table may be sorted ("worst" = highest poor-answer rate first, then the most cited).
SORTS = ("worst", "citations", "negative", "handoffs", "article")


@dataclass(frozen=True)
class CitationStats:
    """What a source counted for one article and locale: answers citing it and what followed them."""

    article_key: str
    locale: str
    citations: int  # answers that cited the article in this locale
    positive: int  # of those, rated up
    negative: int  # of those, rated down
    handoffs: int  # of those, followed by a handoff of the conversation
    poor: int  # of those, rated down or followed by a handoff (each answer once)


@dataclass(frozen=True)
class QualityQuery:
    """What a source should count: answers citing articles of `kb_id` created in [since, until); only the
    `locales` given (None: any) and only `article_key` when set."""

    kb_id: str
    since: datetime
    until: datetime
    locales: tuple[str, ...] | None = None
    article_key: str = ""


class QualitySource(Protocol):
    def __call__(self, *, tenant: Any, query: QualityQuery) -> list[CitationStats]:
        """The tenant's citation counts per article and locale for `query`."""
        ...


_sources: list[QualitySource] = []


def register_quality_source(func: QualitySource) -> None:
    """Make the quality tables read `func` too (called in AppConfig.ready; again is a no-op)."""
    if not callable(func):
        raise ImproperlyConfigured(f"Quality source {func!r} is not callable")
    if func not in _sources:
        _sources.append(func)


@dataclass
class ArticleQuality:
    """One row of the table: an article in one locale over the window."""

    article_key: str
    locale: str
    title: str = ""
    citations: int = 0
    positive: int = 0
    negative: int = 0
    handoffs: int = 0
    poor: int = 0

    @property
    def poor_rate(self) -> float:
        """Share of the citing answers that were rated down or handed off (0..1)."""
        return self.poor / self.citations if self.citations else 0.0

    @property
    def poor_percent(self) -> int:
        return round(self.poor_rate * 100)


def quality_window(days: Any) -> int:
    """The window in days a page asked for: one of WINDOWS, else the default."""
    try:
        value = int(days)
    except (TypeError, ValueError):
        return WINDOWS[0]
    return value if value in WINDOWS else WINDOWS[0]


def article_quality(
    *,
    tenant: Any,
    kb: KnowledgeBase,
    days: int = WINDOWS[0],
    article_key: str = "",
    membership: Any = None,
    sort: str = "worst",
    now: datetime | None = None,
) -> list[ArticleQuality]:
    """Citations and what followed them per article and locale of `kb` over the last `days`, sorted by
    `sort` (worst first by default). A localization editor (`membership`) sees only the locales they may
    edit. One query per registered source plus one for the titles."""
    until = now or timezone.now()
    locales = tuple(loc for loc in kb.locales if member_may_edit(membership=membership, locale=loc))
    if not locales:
        return []
    query = QualityQuery(
        kb_id=str(kb.pk),
        since=until - timedelta(days=days),
        until=until,
        locales=locales,
        article_key=article_key,
    )
    rows: dict[tuple[str, str], ArticleQuality] = {}
    for read in _sources:
        for stats in read(tenant=tenant, query=query):
            if stats.locale not in locales or (article_key and stats.article_key != article_key):
                continue
            row = rows.setdefault(
                (stats.article_key, stats.locale), ArticleQuality(stats.article_key, stats.locale)
            )
            row.citations += stats.citations
            row.positive += stats.positive
            row.negative += stats.negative
            row.handoffs += stats.handoffs
            row.poor += stats.poor
    if rows:
        _titles(kb, list(rows.values()))
    return quality_sorted(list(rows.values()), sort)


def _titles(kb: KnowledgeBase, rows: Sequence[ArticleQuality]) -> None:
    """Each row's title: the locale's generic text, else any of its variants, else the article key."""
    found: dict[tuple[str, str], str] = {}
    for key, locale, title in (
        Translation.objects.filter(
            article__kb=kb,
            article__key__in={r.article_key for r in rows},
            locale__in={r.locale for r in rows},
        )
        .order_by("-region")  # "" last: the generic text overwrites its variants
        .values_list("article__key", "locale", "title")
    ):
        found[(key, locale)] = title or found.get((key, locale), "")
    for row in rows:
        row.title = found.get((row.article_key, row.locale)) or row.article_key


def quality_sorted(rows: list[ArticleQuality], sort: str) -> list[ArticleQuality]:
    """`rows` in the order a table header asked for; unknown orders sort worst first."""
    keys: dict[str, Any] = {
        "citations": lambda r: (-r.citations, -r.poor_rate, r.article_key, r.locale),
        "negative": lambda r: (-r.negative, -r.poor_rate, r.article_key, r.locale),
        "handoffs": lambda r: (-r.handoffs, -r.poor_rate, r.article_key, r.locale),
        "article": lambda r: (r.article_key, r.locale),
    }
    default = lambda r: (-r.poor_rate, -r.citations, r.article_key, r.locale)  # noqa: E731
    return sorted(rows, key=keys.get(sort, default))
