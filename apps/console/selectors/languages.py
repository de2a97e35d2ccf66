"""The tenant dashboard's languages table (issue 21, seed 004): how the chat does per conversation locale.

Read from the region database, not Prometheus: the console shows the tenant's own conversations, exact and
per locale as stored ("de-CH" apart from "de"), where the metrics' `locale` label keeps only configured base
languages. One grouped query: assistant turns by their conversation's locale, the answer ratings of those
conversations counted by correlated subqueries on the same grouped locale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.chat.models import ANSWER_RATING_DOWN_MAX, ANSWER_RATING_UP_MIN, Feedback, FeedbackKind, Outcome
from apps.console.selectors.dashboards import PercentileCont, assistant_turns

#: The table's period, whatever window the rest of the dashboard shows.
LANGUAGE_WINDOW = timedelta(days=7)
#: Locales shown, the busiest first (a locale is any code a channel sent, so the list is capped).
MAX_LANGUAGE_ROWS = 20


@dataclass(frozen=True, slots=True)
class LanguageRow:
    locale: str
    turns: int
    answered: int
    fallback: int
    up: int  # answer ratings 4-5
    down: int  # answer ratings 1-2
    p50: float | None  # milliseconds

    def _share(self, part: int, whole: int) -> float | None:
        return 100 * part / whole if whole else None

    @property
    def answer_rate(self) -> float | None:
        return self._share(self.answered, self.turns)

    @property
    def fallback_rate(self) -> float | None:
        return self._share(self.fallback, self.turns)

    @property
    def up_share(self) -> float | None:
        """Ratings up out of up and down, in percent (neutral ratings left out; None without any)."""
        return self._share(self.up, self.up + self.down)


def _ratings(since: datetime, rating: Q) -> Coalesce:
    """Answer ratings given since `since` in conversations of the outer row's locale."""
    rated = (
        Feedback.objects.filter(rating, kind=FeedbackKind.ANSWER, created_at__gte=since)
        .filter(conversation__locale=OuterRef("locale"))
        .order_by()
        .values("conversation__locale")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(rated, output_field=IntegerField()), Value(0))


def language_summary(*, now: datetime | None = None) -> list[LanguageRow]:
    """Per conversation locale over the last 7 days: turns, answer and fallback rate, ratings, p50 latency."""
    since = (now or timezone.now()) - LANGUAGE_WINDOW
    rows = (
        assistant_turns(since)
        .values(locale=F("conversation__locale"))
        .annotate(
            turns=Count("id"),
            answered=Count("id", filter=Q(outcome=Outcome.ANSWERED)),
            fallback=Count("id", filter=Q(outcome=Outcome.FALLBACK)),
            p50=PercentileCont("latency_ms", 0.5),
            up=_ratings(since, Q(rating__gte=ANSWER_RATING_UP_MIN)),
            down=_ratings(since, Q(rating__lte=ANSWER_RATING_DOWN_MAX)),
        )
        .order_by("-turns", "locale")[:MAX_LANGUAGE_ROWS]
    )
    return [LanguageRow(**row) for row in rows]
