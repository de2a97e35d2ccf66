"""docs/vendors.md: every test its simulator tables name exists, and no row says a call is unsupported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("Salesforce", "HubSpot", "ServiceNow", "SAP (SOAP)")


def section(name: str) -> str:
    text = (ROOT / "docs" / "vendors.md").read_text()
    match = re.search(rf"^## {re.escape(name)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/vendors.md has no '## {name}' section"
    return match.group(1)


def defined(path: Path) -> set[str]:
    """Top-level test functions and classes (and their test methods, as Class::method) of a module."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{n.name}" for n in node.body if isinstance(n, ast.FunctionDef)}
    return names


@pytest.mark.parametrize("name", SECTIONS)
def test_every_row_names_an_existing_test(name: str) -> None:
    rows = [
        line for line in section(name).splitlines() if line.startswith("| ") and not line.startswith("| Call")
    ]
    assert len(rows) >= 8
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 3, row
        supported, test = cells[1], cells[2]
        assert supported == "yes" or supported.startswith("partial: "), row
        path, _, test_name = test.partition("::")
        assert (ROOT / path).is_file(), row
        if test_name:
            assert test_name in defined(ROOT / path), row
