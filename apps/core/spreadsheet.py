"""CSV cells that a spreadsheet cannot run: the one helper every CSV the product writes goes through.

A cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel, LibreOffice and
Google Sheets (`=HYPERLINK(...)` in a user agent becomes a live link). OWASP's advice: prefix such a cell
with a single quote, which spreadsheets show as text. Cells already starting with a quote get one too, so the
escaping can be undone exactly (signed audit exports are verified against the original values).
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def csv_cell(value: Any) -> Any:
    """Neutralise a text cell a spreadsheet would evaluate; other values pass unchanged."""
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, QUOTE)):
        return QUOTE + value
    return value


def csv_cell_value(text: str) -> str:
    """The original text of a cell written through csv_cell."""
    return text[1:] if text.startswith(QUOTE) else text
