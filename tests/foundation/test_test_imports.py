"""Test modules share through tests/fixtures/ (the plugin) and plain helper modules, never through each other:
no test module or conftest imports a `test_*` module or a conftest, at module level or inside a function."""

from __future__ import annotations

import ast
import re

from tests.fixtures.processes import ROOT

#: A test module or a conftest: tests.chat.test_api_keys, tests.sync.conftest, apps.chat.tests.test_x, ...
FORBIDDEN = re.compile(r"^(apps\.\w+\.)?tests(\.\w+)*\.(test_\w+|conftest)$")


def forbidden_imports(source: str) -> list[str]:
    """The modules `source` imports that are test modules or conftests."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if FORBIDDEN.match(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if FORBIDDEN.match(node.module):
                found.append(node.module)
            else:  # from tests.chat import test_api_keys / conftest
                found += [
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if FORBIDDEN.match(f"{node.module}.{alias.name}")
                ]
    return found


def test_no_test_module_imports_another_test_module_or_a_conftest() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "apps").glob("*/tests/**/*.py")])
        if (found := forbidden_imports(path.read_text()))
    }
    assert offenders == {}, "move what they share to tests/fixtures/ or a helper module"


def test_the_check_sees_every_form_of_such_an_import() -> None:
    source = """
import tests.chat.conftest
from tests.sync.conftest import sf_connection
from tests.chat import test_api_keys
from tests.chaos.test_multiprocess import Web as _Web

def later():
    from tests.foundation.test_settings import PRODUCTION_ENV

from tests.fixtures.chat import issue_key
from tests.chat.helpers import say
from tests import factories
"""
    assert forbidden_imports(source) == [
        "tests.chat.conftest",
        "tests.sync.conftest",
        "tests.chat.test_api_keys",
        "tests.chaos.test_multiprocess",
        "tests.foundation.test_settings",
    ]
