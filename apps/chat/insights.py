"""The chat's citations, counted for knowledge's per-article quality (apps/knowledge/insights.py;
registered in ChatConfig.ready(), like learning.py's question source).

One aggregate statement per page: the tenant's assistant messages of the window (the message_tenant_created
index bounds the scan to it), their citations unnested, then per cited answer whether it was rated up or down
(Feedback by message, its foreign-key index) and whether its conversation was handed off afterwards (Handoff
by conversation, its foreign-key index). No rollup table: the window is at most 90 days of one tenant's
answers and the page is an editor's, not a customer's.

A citation names its knowledge base (`kb_id`, since issue 21); older ones are matched by their console URL,
which holds the knowledge base id.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

from apps.chat.models import (
    ANSWER_RATING_DOWN_MAX,
    ANSWER_RATING_UP_MIN,
    Feedback,
    FeedbackKind,
    Handoff,
    Message,
    Role,
)
from apps.core.context import current_tenant
from apps.knowledge.insights import CitationStats, QualityQuery

_SQL = """
WITH cited AS (
    SELECT DISTINCT m.id, m.conversation_id, m.created_at,
           c.value ->> 'article_key' AS article_key, c.value ->> 'locale' AS locale
    FROM {message} m
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(m.citations) = 'array' THEN m.citations ELSE '[]'::jsonb END
    ) AS c(value)
    WHERE m.tenant_id = %(tenant)s AND m.role = %(role)s
      AND m.created_at >= %(since)s AND m.created_at < %(until)s
      AND m.citations <> '[]'::jsonb
      AND jsonb_typeof(c.value) = 'object'
      AND (c.value ->> 'kb_id' = %(kb)s
           OR (c.value ->> 'kb_id' IS NULL AND c.value ->> 'url' LIKE %(kb_url)s))
      {locales}
      {article}
), judged AS (
    SELECT cited.article_key, cited.locale,
           EXISTS (SELECT 1 FROM {feedback} f
                   WHERE f.message_id = cited.id AND f.kind = %(answer)s AND f.rating >= %(up_min)s) AS up,
           EXISTS (SELECT 1 FROM {feedback} f
                   WHERE f.message_id = cited.id AND f.kind = %(answer)s
                     AND f.rating <= %(down_max)s) AS down,
           EXISTS (SELECT 1 FROM {handoff} h
                   WHERE h.conversation_id = cited.conversation_id AND h.tenant_id = %(tenant)s
                     AND h.created_at >= cited.created_at) AS handed
    FROM cited
)
SELECT article_key, locale, count(*),
       count(*) FILTER (WHERE up), count(*) FILTER (WHERE down),
       count(*) FILTER (WHERE handed), count(*) FILTER (WHERE down OR handed)
FROM judged
WHERE article_key IS NOT NULL AND locale IS NOT NULL
GROUP BY article_key, locale
"""


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def citation_stats(*, tenant: Any, query: QualityQuery) -> list[CitationStats]:
    """Per article and locale: the tenant's answers citing it in the window and what followed them."""
    params: dict[str, Any] = {
        "tenant": tenant.id,
        "role": Role.ASSISTANT,
        "since": query.since,
        "until": query.until,
        "kb": query.kb_id,
        "kb_url": f"%/{_like_escaped(query.kb_id)}/%",
        "answer": FeedbackKind.ANSWER,
        "up_min": ANSWER_RATING_UP_MIN,
        "down_max": ANSWER_RATING_DOWN_MAX,
    }
    locales = article = ""
    if query.locales is not None:
        locales = "AND c.value ->> 'locale' = ANY(%(locales)s)"
        params["locales"] = list(query.locales)
    if query.article_key:
        article = "AND c.value ->> 'article_key' = %(article)s"
        params["article"] = query.article_key
    sql = _SQL.format(
        message=Message._meta.db_table,
        feedback=Feedback._meta.db_table,
        handoff=Handoff._meta.db_table,
        locales=locales,
        article=article,
    )
    with connections[current_tenant().db_alias].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        CitationStats(
            article_key=key,
            locale=locale,
            citations=cited,
            positive=up,
            negative=down,
            handoffs=handed,
            poor=poor,
        )
        for key, locale, cited, up, down, handed, poor in rows
    ]
