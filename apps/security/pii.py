"""Detect and redact personal data (PII) in free text: chat transcripts, log lines, LLM prompts.

Pure standard library and stateless, so it can run on every chat turn and every log line. Each detector
pairs a precompiled regex with a checksum or structural check (Luhn, mod-97, national check digits), and
detectors that need digits or an "@" are skipped when the text cannot contain a match. The regexes lean
towards missing an odd format rather than flagging order numbers, dates, prices or versions.

Offsets refer to the caller's string. Full-width digits and Unicode dashes/spaces (common in Japanese and
French text) are folded one-to-one before matching, so offsets stay valid.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

__all__ = ["PiiKind", "PiiMatch", "PiiRedactingFilter", "detect", "redact", "redact_with"]


class PiiKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CARD = "card"
    IBAN = "iban"
    NATIONAL_ID = "national_id"


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One detection. `text` is the personal data itself: it is left out of repr so it never gets logged."""

    kind: PiiKind
    start: int
    end: int
    text: str = field(repr=False)
    detail: str = ""  # brand, country or id scheme, e.g. "visa", "DE", "us_ssn"


RedactStyle = Literal["label", "mask"]

# Overlap tie-break after length: the more constrained detector wins.
_PRIORITY = {PiiKind.IBAN: 0, PiiKind.CARD: 1, PiiKind.NATIONAL_ID: 2, PiiKind.EMAIL: 3, PiiKind.PHONE: 4}
_ALL_KINDS = frozenset(PiiKind)

# --- Text folding ------------------------------------------------------------------------------------------
_FOLD_TABLE = {cp: ord("0") + cp - 0xFF10 for cp in range(0xFF10, 0xFF1A)}
_FOLD_TABLE.update({0xFF0B: ord("+"), 0xFF08: ord("("), 0xFF09: ord(")"), 0xFF20: ord("@")})
_FOLD_TABLE.update(dict.fromkeys([0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2212, 0x30FC, 0xFF0D], ord("-")))
_FOLD_TABLE.update(dict.fromkeys([0x00A0, 0x2009, 0x202F, 0x3000], ord(" ")))
_FULLWIDTH_DIGIT = re.compile("[\uff10-\uff19]")
_FOLDABLE_SEPARATOR = re.compile(
    "[\u00a0\u2009\u202f\u3000\u2010-\u2014\u2212\u30fc\uff0b\uff0d\uff08\uff09]"
)
_DIGITS = "0123456789"


def _fold(text: str) -> str:
    """Fold full-width digits and Unicode dashes/spaces to ASCII, but only when they can matter.

    Translating costs more than detecting, and "ー" or a no-break space alone is common in Japanese
    and French prose, so a separator triggers folding only next to a digit.
    """
    if text.isascii():
        return text
    if _FULLWIDTH_DIGIT.search(text):
        return text.translate(_FOLD_TABLE)
    last = len(text) - 1
    for m in _FOLDABLE_SEPARATOR.finditer(text):
        i = m.start()
        if (i > 0 and "0" <= text[i - 1] <= "9") or (i < last and "0" <= text[i + 1] <= "9"):
            return text.translate(_FOLD_TABLE)
    return text


# --- E-mail ------------------------------------------------------------------------------------------------
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9_%+\-][A-Za-z0-9._%+\-]{0,63}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![A-Za-z0-9\-])"
)


def _find_emails(text: str, pos: int, endpos: int) -> Iterator[PiiMatch]:
    # Search only a window around each "@": scanning all text for local parts backtracks on every word.
    last_end = pos
    at = text.find("@", pos, endpos)
    while at != -1:
        if at >= last_end:
            m = _EMAIL_RE.search(text, max(last_end, at - 65), min(endpos, at + 256))
            if m is not None:
                yield PiiMatch(PiiKind.EMAIL, m.start(), m.end(), m.group())
                last_end = m.end()
        at = text.find("@", at + 1, endpos)


# --- Phone numbers -----------------------------------------------------------------------------------------
_PHONE_RE = re.compile(
    r"""
    (?<![A-Za-z0-9+_/\#@\-])(?<![0-9][.,:])
    (?:
        (?P<intl>(?:\+|(?<![0-9][\ .\-/])00)[1-9](?:[ .\-/]?(?:\([0-9]{1,5}\)|[0-9]))+)
      | (?<![0-9][\ .\-/])  # a national number is not the tail of a longer digit sequence
        (?:
            (?P<nanp>(?:\([2-9][0-9]{2}\)\ ?|[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4})
          | (?P<trunk>(?:\(0[1-9][0-9]{0,4}\)|0[1-9])(?:[ .\-/]?[0-9])+)
        )
    )
    (?![A-Za-z0-9]|[.,:/\-][0-9])
    """,
    re.VERBOSE,
)
_PHONE_SEPARATORS = re.compile(r"[ .\-/()]")
# Year-month-day or day-month-year at the start of a digit group sequence: a date, maybe with a time.
_DATE_GROUPS = re.compile(
    r"(?:(?:19|20)[0-9]{2}[ .\-/](?:0?[1-9]|1[0-2])[ .\-/](?:0?[1-9]|[12][0-9]|3[01])"
    r"|(?:0?[1-9]|[12][0-9]|3[01])[ .\-/](?:0?[1-9]|1[0-2])[ .\-/](?:19|20)[0-9]{2})(?![0-9])"
)


def _phone_ok(candidate: str, form: str) -> bool:
    if _DATE_GROUPS.match(candidate.lstrip("+(")):
        return False
    digits = sum(map(candidate.count, _DIGITS))
    has_separator = _PHONE_SEPARATORS.search(candidate) is not None
    if candidate.count("(") != candidate.count(")") or candidate.count("(") > 1:
        return False
    if form == "intl":
        if candidate.startswith("00"):
            # "00" instead of "+" looks like a zero-padded id unless the number is grouped.
            return has_separator and 10 <= digits <= 17
        return 8 <= digits - candidate.count("(0)") <= 15
    if form == "trunk":
        return 9 <= digits <= 12 if has_separator else 10 <= digits <= 11
    return True  # nanp: fully constrained by the regex


def _find_phones(text: str, pos: int, endpos: int) -> Iterator[PiiMatch]:
    for m in _PHONE_RE.finditer(text, pos, endpos):
        form = m.lastgroup or ""
        start, candidate = m.start(), m.group()
        if _phone_ok(candidate, form):
            yield PiiMatch(PiiKind.PHONE, start, m.end(), candidate)
            continue
        if form == "intl":
            # "+49 30 1234567 2024-05-01": drop trailing space-separated groups; "+" is a strong signal.
            cut = candidate.rfind(" ")
            while cut > 0:
                candidate = candidate[:cut].rstrip(" .-/")
                if _phone_ok(candidate, form):
                    yield PiiMatch(PiiKind.PHONE, start, start + len(candidate), candidate)
                    break
                cut = candidate.rfind(" ")


# --- Payment cards -----------------------------------------------------------------------------------------
_CARD_RE = re.compile(r"(?<![A-Za-z0-9_./#\-])[0-9](?:[ \-]?[0-9]){12,}(?![A-Za-z0-9])")
_CARD_GROUP = re.compile(r"[0-9]+")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i & 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card_brand(d: str) -> str | None:
    """Return the scheme for an IIN prefix and length, or None when no scheme issues such a number."""
    n, p2, p3, p4, p6 = len(d), int(d[:2]), int(d[:3]), int(d[:4]), int(d[:6])
    if d[0] == "4":
        return "visa" if n in (13, 16, 19) else None
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return "mastercard" if n == 16 else None
    if p2 in (34, 37):
        return "amex" if n == 15 else None
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925:
        return "discover" if 16 <= n <= 19 else None
    if 3528 <= p4 <= 3589:
        return "jcb" if 16 <= n <= 19 else None
    if 300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39):
        return "diners" if 14 <= n <= 19 else None
    if 2200 <= p4 <= 2204:
        return "mir" if 16 <= n <= 19 else None
    if p2 == 62:
        return "unionpay" if 16 <= n <= 19 else None
    if p2 in (50, 56, 57, 58) or p4 in (6304, 6759, 6761, 6762, 6763):
        return "maestro" if 13 <= n <= 19 else None
    return None


def _card_at(text: str, start: int, end: int) -> PiiMatch | None:
    digits = text[start:end].replace(" ", "").replace("-", "")
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        brand = _card_brand(digits)
        if brand is not None:
            return PiiMatch(PiiKind.CARD, start, end, text[start:end], brand)
    return None


def _find_cards(text: str, pos: int, endpos: int) -> Iterator[PiiMatch]:
    for m in _CARD_RE.finditer(text, pos, endpos):
        found = _card_at(text, m.start(), m.end())
        if found is None and (" " in m.group() or "-" in m.group()):
            # "4242 4242 4242 4242 12 25": try group-aligned sub-spans, longest first.
            groups = [(g.start(), g.end()) for g in _CARD_GROUP.finditer(text, m.start(), m.end())]
            spans = sorted(
                ((groups[i][0], groups[j][1]) for i in range(len(groups)) for j in range(i, len(groups))),
                key=lambda span: span[0] - span[1],
            )
            for s, e in spans:
                if e - s < 13 or (s, e) == (m.start(), m.end()):
                    continue
                found = _card_at(text, s, e)
                if found is not None:
                    break
        if found is not None:
            yield found


# --- IBAN --------------------------------------------------------------------------------------------------
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})[0-9]{2}(?: ?[A-Z0-9]){10,32}")
_IBAN_DIGITS = str.maketrans({chr(c): str(c - 55) for c in range(ord("A"), ord("Z") + 1)})


def _iban_ok(compact: str) -> bool:
    if not 2 <= int(compact[2:4]) <= 98:
        return False
    return int((compact[4:] + compact[:4]).translate(_IBAN_DIGITS)) % 97 == 1


def _find_ibans(text: str, pos: int, endpos: int) -> Iterator[PiiMatch]:
    for m in _IBAN_RE.finditer(text, pos, endpos):
        length = _IBAN_LENGTHS.get(m.group(1))
        if length is None:
            continue
        # The regex runs on into following words ("... 3000 BIC"); cut at the country's exact length.
        candidate = m.group()
        compact = candidate.replace(" ", "")
        if len(compact) < length:
            continue
        end = m.start()
        seen = 0
        for ch in candidate:
            end += 1
            if ch != " ":
                seen += 1
                if seen == length:
                    break
        if end < len(text) and text[end].isascii() and text[end].isalnum():
            continue
        if _iban_ok(compact[:length]):
            yield PiiMatch(PiiKind.IBAN, m.start(), end, text[m.start() : end], m.group(1))


# --- National identifiers ----------------------------------------------------------------------------------
# One alternation, one scan. The schemes cannot match the same span (their lengths and shapes differ), so
# leftmost-first alternation loses nothing.
_NATIONAL_RE = re.compile(
    r"""
    (?<![A-Za-z0-9_./\#+\-])
    (?:
        (?P<us_ssn>(?!000|666|9)[0-9]{3}(?P<ssn_sep>[\ \-])(?!00)[0-9]{2}(?P=ssn_sep)(?!0000)[0-9]{4}
            (?![A-Za-z0-9]|[.,\-][0-9]))
      | (?P<uk_nino>(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]
            (?P<nino_sep>\ ?)[0-9]{2}(?P=nino_sep)[0-9]{2}(?P=nino_sep)[0-9]{2}(?P=nino_sep)[A-D]
            (?![A-Za-z0-9]))
      | (?P<es_dni>(?:[0-9]{8}|[XYZ][\ \-]?[0-9]{7})[\ \-]?[A-Z](?![A-Za-z0-9]))
      | (?P<it_codice_fiscale>[A-Z]{6}[0-9LMNP-V]{2}[ABCDEHLMPRST][0-9LMNP-V]{2}[A-Z][0-9LMNP-V]{3}[A-Z]
            (?![A-Za-z0-9]))
      | (?P<fr_nir>[1-478](?P<nir_sep>\ ?)[0-9]{2}(?P=nir_sep)(?:0[1-9]|1[0-2]|[2-9][0-9])(?P=nir_sep)
            (?:[0-9]{2}|2[AB])(?P=nir_sep)[0-9]{3}(?P=nir_sep)[0-9]{3}(?P=nir_sep)[0-9]{2}(?![A-Za-z0-9]))
      | (?P<de_steuer_id>[1-9][0-9](?P<steuer_sep>\ ?)[0-9]{3}(?P=steuer_sep)[0-9]{3}(?P=steuer_sep)[0-9]{3}
            (?![A-Za-z0-9]))
      | (?P<nine>[0-9]{9}(?![A-Za-z0-9]|[.,\-/][0-9]))
    )
    """,
    re.VERBOSE,
)
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_CF_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]
# A bare 9-digit number is a BSN or an SSN only when the words just before say so: one random 9-digit
# number in eleven passes the BSN check, so the check alone would redact order numbers.
# The label must directly precede the number: no other digits in between.
_BSN_CONTEXT = re.compile(r"\b(?:bsn|burgerservicenummer|sofi-?nummer)\b[^0-9]{0,20}$", re.IGNORECASE)
_SSN_CONTEXT = re.compile(r"\b(?:ssn|social security(?: number)?)\b[^0-9]{0,20}$", re.IGNORECASE)
_CONTEXT_WINDOW = 40


def _dni_ok(value: str) -> bool:
    compact = value.replace(" ", "").replace("-", "")
    number = str("XYZ".index(compact[0])) + compact[1:-1] if compact[0] in "XYZ" else compact[:-1]
    return _DNI_LETTERS[int(number) % 23] == compact[-1]


def _cf_ok(value: str) -> bool:
    total = 0
    for i, ch in enumerate(value[:15]):
        n = ord(ch) - 48 if ch.isdigit() else ord(ch) - 65
        total += _CF_ODD[n] if i % 2 == 0 else n
    return chr(65 + total % 26) == value[15]


def _nir_ok(value: str) -> bool:
    compact = value.replace(" ", "")
    body = compact[:13].replace("2A", "19").replace("2B", "18")
    return 97 - int(body) % 97 == int(compact[13:])


def _steuer_id_ok(value: str) -> bool:
    digits = value.replace(" ", "")
    counts = [digits[:10].count(d) for d in _DIGITS]
    repeated = [c for c in counts if c > 1]
    if len(repeated) != 1 or repeated[0] > 3:
        return False
    product = 10
    for ch in digits[:10]:
        total = (int(ch) + product) % 10 or 10
        product = (total * 2) % 11
    return (11 - product) % 10 == int(digits[10])


def _bsn_ok(digits: str) -> bool:
    total = sum(int(d) * w for d, w in zip(digits, (9, 8, 7, 6, 5, 4, 3, 2, -1), strict=True))
    return total % 11 == 0 and digits[0:8] != "00000000"


def _ssn_ok(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _nine_digit_scheme(text: str, start: int, digits: str) -> str | None:
    before = text[max(0, start - _CONTEXT_WINDOW) : start]
    if _BSN_CONTEXT.search(before) and _bsn_ok(digits):
        return "nl_bsn"
    if _SSN_CONTEXT.search(before) and _ssn_ok(digits):
        return "us_ssn"
    return None


_NATIONAL_CHECKS: dict[str, Callable[[str], bool]] = {
    "us_ssn": lambda value: True,  # the regex already excludes the invalid ranges
    "uk_nino": lambda value: True,  # the regex already excludes the unused prefixes
    "es_dni": _dni_ok,
    "it_codice_fiscale": _cf_ok,
    "fr_nir": _nir_ok,
    "de_steuer_id": _steuer_id_ok,
}


def _find_national_ids(text: str, pos: int, endpos: int) -> Iterator[PiiMatch]:
    for m in _NATIONAL_RE.finditer(text, pos, endpos):
        scheme: str | None = m.lastgroup
        value = m.group()
        if scheme == "nine":
            scheme = _nine_digit_scheme(text, m.start(), value)
        elif scheme is not None and not _NATIONAL_CHECKS[scheme](value):
            scheme = None
        if scheme is not None:
            if scheme == "es_dni" and value[0] in "XYZ":
                scheme = "es_nie"
            yield PiiMatch(PiiKind.NATIONAL_ID, m.start(), m.end(), value, scheme)


# --- Orchestration -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Detector:
    kind: PiiKind
    find: Callable[[str, int, int], Iterator[PiiMatch]]
    min_cluster: int  # a shorter digit cluster (see below) cannot hold a match


_DIGIT_DETECTORS = (
    _Detector(PiiKind.IBAN, _find_ibans, 13),
    _Detector(PiiKind.CARD, _find_cards, 13),
    _Detector(PiiKind.NATIONAL_ID, _find_national_ids, 6),  # "AB123456C"
    _Detector(PiiKind.PHONE, _find_phones, 8),
)
_MIN_CLUSTER = min(d.min_cluster for d in _DIGIT_DETECTORS)
# Every digit-based match lies in a "cluster": digits linked by short runs of letters and separators.
# One scan for clusters replaces one scan per detector; detectors then run only on windows around
# clusters with enough digits. The window reaches back over leading letters ("DE89", "RSSMRA85", "+")
# and forward over trailing letters and groups so boundary look-aheads see the real next characters.
# The pattern starts with a plain [0-9] so the regex engine skips ahead to digits; possessive
# quantifiers keep it from backtracking through the letter gaps.
_CLUSTER_RE = re.compile(r"[0-9][0-9]*+(?:[A-Za-z .\-/()]{1,6}+[0-9]++)*+")
_CLUSTER_TAIL_RE = re.compile(r"(?: ?[A-Za-z0-9]){0,24}")
_WINDOW_BEFORE = 8
_WINDOW_AFTER = 4


@functools.cache
def _kind_set(kinds: frozenset[PiiKind | str] | None) -> frozenset[PiiKind]:
    if kinds is None:
        return _ALL_KINDS
    return frozenset(PiiKind(k) for k in kinds)  # raises ValueError on an unknown kind


@functools.cache
def _digit_detectors(kinds: frozenset[PiiKind]) -> tuple[_Detector, ...]:
    return tuple(d for d in _DIGIT_DETECTORS if d.kind in kinds)


def _scan(text: str, kinds: frozenset[PiiKind], *, precheck: bool = True) -> list[PiiMatch]:
    """Return raw, possibly overlapping detections; precheck=False (whole-text scans) is the baseline."""
    folded = _fold(text)
    size = len(text)
    found: list[PiiMatch] = []
    if PiiKind.EMAIL in kinds and (not precheck or "@" in folded):
        found.extend(_find_emails(folded, 0, size))
    detectors = _digit_detectors(kinds)
    if not precheck:
        for detector in detectors:
            found.extend(detector.find(folded, 0, size))
    elif detectors:
        for cluster in _CLUSTER_RE.finditer(folded):
            start, end = cluster.span()
            if end - start < _MIN_CLUSTER:
                continue
            pos = max(0, start - _WINDOW_BEFORE)
            tail = _CLUSTER_TAIL_RE.match(folded, end)  # always matches; it may be empty
            endpos = min(size, (tail.end() if tail else end) + _WINDOW_AFTER)
            for detector in detectors:
                if end - start >= detector.min_cluster:
                    found.extend(detector.find(folded, pos, endpos))
    if folded is not text:
        found = [PiiMatch(m.kind, m.start, m.end, text[m.start : m.end], m.detail) for m in found]
    return found


def _resolve(found: list[PiiMatch]) -> list[PiiMatch]:
    if len(found) < 2:
        return found
    # Longest first, then the more constrained kind; keep a match only if it overlaps nothing kept.
    found.sort(key=lambda m: (m.start - m.end, _PRIORITY[m.kind], m.start))
    kept: list[PiiMatch] = []
    for m in found:
        if all(m.end <= k.start or m.start >= k.end for k in kept):
            kept.append(m)
    kept.sort(key=lambda m: m.start)
    return kept


def detect(text: str, *, kinds: Iterable[PiiKind | str] | None = None) -> list[PiiMatch]:
    """Return non-overlapping PII matches in `text`, sorted by position."""
    if len(text) < 6:
        return []
    return _resolve(_scan(text, _kind_set(None if kinds is None else frozenset(kinds))))


def redact_with(
    text: str, replacer: Callable[[PiiMatch], str], *, kinds: Iterable[PiiKind | str] | None = None
) -> str:
    """Replace each match with `replacer(match)`; lets a vault swap values for reversible tokens."""
    matches = detect(text, kinds=kinds)
    if not matches:
        return text
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(replacer(m))
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


def _label(match: PiiMatch) -> str:
    return f"[{match.kind.name}]"


def _mask(match: PiiMatch) -> str:
    if match.kind in (PiiKind.CARD, PiiKind.IBAN):
        tail = "".join(ch for ch in match.text if ch.isalnum())[-4:]
        return f"[{match.kind.name} •••• {tail}]"
    return f"[{match.kind.name}]"


_STYLES: dict[str, Callable[[PiiMatch], str]] = {"label": _label, "mask": _mask}


def redact(text: str, *, kinds: Iterable[PiiKind | str] | None = None, style: RedactStyle = "label") -> str:
    """Replace PII with placeholders such as [EMAIL]; style "mask" keeps the last 4 of cards and IBANs."""
    try:
        replacer = _STYLES[style]
    except KeyError:
        raise ValueError(f"unknown redaction style {style!r}") from None
    return redact_with(text, replacer, kinds=kinds)


# --- Logging -----------------------------------------------------------------------------------------------
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _redact_nested(value: Any, depth: int = 0) -> Any:
    """Redact the strings inside a dict/list extra (Celery logs task kwargs as one); deeper, its repr."""
    if isinstance(value, str):
        return redact(value)
    if depth >= 4:
        return redact(repr(value))
    if isinstance(value, dict):
        return {k: _redact_nested(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_nested(v, depth + 1) for v in value]
    return value


class PiiRedactingFilter(logging.Filter):
    """Redact PII from the rendered message, string extras, tracebacks and stack info of every record.

    Never drops a record and never raises: a record whose arguments do not fit its format string is
    logged as the redacted format string plus the redacted arguments.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict) and not record.args:
            # The JSON formatter merges a dict message into the log line: keep it a dict.
            record.msg = {k: redact(v) if isinstance(v, str) else v for k, v in record.msg.items()}
        else:
            try:
                message = record.getMessage()
            except Exception:  # bad format args: render something readable instead of a handler error
                try:
                    message = f"{record.msg} (args: {record.args!r})"
                except Exception:
                    message = "<unprintable log message>"
            record.msg = redact(message)
            record.args = None
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and isinstance(value, str | dict | list | tuple):
                record.__dict__[key] = _redact_nested(value)
        if record.exc_info and not record.exc_text:
            rendered = logging.Formatter().formatException(record.exc_info)
            redacted = redact(rendered)
            if redacted is not rendered:
                # Formatters re-render exc_info over exc_text, so drop it once it carries PII.
                record.exc_text, record.exc_info = redacted, None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
