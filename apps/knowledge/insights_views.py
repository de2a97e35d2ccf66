"""The per-article quality tables of the knowledge base page and the article page (insights.py).

Not views of their own: the two pages add this context (one line each) and include
knowledge/insights/_kb_quality.html or _article_quality.html. Their own query parameters (`qsort`, `qdays`,
`qpage`) leave the pages' other parameters alone.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest

from apps.knowledge.insights import SORTS, WINDOWS, article_quality, quality_window
from apps.knowledge.models import Article, KnowledgeBase

ROWS_PER_PAGE = 20


def kb_quality_context(request: HttpRequest, kb: KnowledgeBase) -> dict[str, Any]:
    """The knowledge base page's table: every cited article and locale, worst first, paginated."""
    days = quality_window(request.GET.get("qdays"))
    sort = request.GET.get("qsort") or SORTS[0]
    sort = sort if sort in SORTS else SORTS[0]
    rows = article_quality(
        tenant=request.tenant,  # type: ignore[attr-defined]
        kb=kb,
        days=days,
        sort=sort,
        membership=request.membership,  # type: ignore[attr-defined]
    )
    return {
        "quality_page": Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("qpage")),
        "quality_days": days,
        "quality_sort": sort,
        "quality_windows": WINDOWS,
    }


def article_quality_context(request: HttpRequest, kb: KnowledgeBase, article: Article) -> dict[str, Any]:
    """The article page's table: the article per locale the viewer may edit."""
    days = quality_window(request.GET.get("qdays"))
    return {
        "quality_rows": article_quality(
            tenant=request.tenant,  # type: ignore[attr-defined]
            kb=kb,
            days=days,
            article_key=article.key,
            membership=request.membership,  # type: ignore[attr-defined]
            sort="article",
        ),
        "quality_days": days,
        "quality_windows": WINDOWS,
    }
