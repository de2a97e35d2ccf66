"""Line diffs of two texts with word-level changes inside changed lines (Python's difflib), and the
phrasings added and removed between two versions.

Returns plain data, not HTML: the template renders it with auto-escaping, so article text can never
inject markup into the console.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

# Words, runs of white space and single punctuation marks: changes show as whole words.
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")

Segment = tuple[bool, str]  # (changed, text)


@dataclass(frozen=True)
class DiffRow:
    """One row of a side-by-side diff; `kind` is equal, delete, insert, replace or skip (elided context)."""

    kind: str
    old_number: int | None = None
    old: tuple[Segment, ...] = ()
    new_number: int | None = None
    new: tuple[Segment, ...] = ()


@dataclass(frozen=True)
class TextDiff:
    rows: tuple[DiffRow, ...]
    added: int
    removed: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def _words(old: str, new: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    left: list[Segment] = []
    right: list[Segment] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            left.append((False, "".join(a[i1:i2])))
            right.append((False, "".join(b[j1:j2])))
            continue
        if i2 > i1:
            left.append((True, "".join(a[i1:i2])))
        if j2 > j1:
            right.append((True, "".join(b[j1:j2])))
    return tuple(left), tuple(right)


def text_diff(old: str, new: str, *, context: int = 3) -> TextDiff:
    """Diff `old` against `new` line by line, keeping `context` unchanged lines around each change."""
    a, b = (old or "").splitlines(), (new or "").splitlines()
    rows: list[DiffRow] = []
    added = removed = 0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    groups = list(matcher.get_grouped_opcodes(context)) if a != b else []
    for index, group in enumerate(groups):
        if index or group[0][1] > 0 or group[0][3] > 0:
            rows.append(DiffRow(kind="skip"))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for offset in range(i2 - i1):
                    line = ((False, a[i1 + offset]),)
                    rows.append(DiffRow("equal", i1 + offset + 1, line, j1 + offset + 1, line))
                continue
            removed += i2 - i1
            added += j2 - j1
            paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
            for offset in range(paired):
                left, right = _words(a[i1 + offset], b[j1 + offset])
                rows.append(DiffRow("replace", i1 + offset + 1, left, j1 + offset + 1, right))
            for i in range(i1 + paired, i2):
                rows.append(DiffRow("delete", old_number=i + 1, old=((True, a[i]),)))
            for j in range(j1 + paired, j2):
                rows.append(DiffRow("insert", new_number=j + 1, new=((True, b[j]),)))
    if groups and (groups[-1][-1][2] < len(a) or groups[-1][-1][4] < len(b)):
        rows.append(DiffRow(kind="skip"))
    return TextDiff(rows=tuple(rows), added=added, removed=removed)


@dataclass(frozen=True)
class PhrasingsDiff:
    """Phrasings added and removed between two versions of a text (a set: their order means nothing).

    Compared ignoring case, as `services.phrasings_clean` de-duplicates them; `kept` counts the others.
    """

    added: tuple[str, ...]
    removed: tuple[str, ...]
    kept: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def phrasings_diff(old: Sequence[str], new: Sequence[str]) -> PhrasingsDiff:
    """What a reviewer has to look at: the phrasings of `new` that `old` lacks, and the ones it dropped."""
    old_keys = {p.casefold() for p in old}
    new_keys = {p.casefold() for p in new}
    return PhrasingsDiff(
        added=tuple(p for p in new if p.casefold() not in old_keys),
        removed=tuple(p for p in old if p.casefold() not in new_keys),
        kept=sum(1 for p in new if p.casefold() in old_keys),
    )
