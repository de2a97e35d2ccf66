"""The layer contracts of pyproject.toml ([tool.importlinter]) hold, and a new violation fails them.

The violations are added to a copy of the source tree (only the Python files and pyproject.toml), never to
the checkout; each case names the contract that must break and the import it must report.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
PACKAGES = ("apps", "hub", "connectors")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages' Python files and pyproject.toml, copied once for the module."""
    copy = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            target = copy / source.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    shutil.copyfile(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


@pytest.fixture
def add_module(tree: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Files a case adds to the copied tree, removed again after it."""
    added: list[Path] = []
    yield tree, added
    for path in reversed(added):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


CASES = {
    "core imports chat": (
        {"apps/core/upward.py": "from apps.chat import models\n"},
        "Apps import only the layers below them",
        "apps.core.upward -> apps.chat.models",
    ),
    "a function-level import counts": (
        {"apps/tenants/upward.py": "def seed():\n    from apps.knowledge import models\n"},
        "Apps import only the layers below them",
        "apps.tenants.upward -> apps.knowledge.models",
    ),
    "siblings of one layer are independent": (
        {"apps/integrations/sideways.py": "import apps.knowledge.selectors\n"},
        "Apps import only the layers below them",
        "apps.integrations.sideways -> apps.knowledge.selectors",
    ),
    "a new app needs a layer": (
        {"apps/newapp/__init__.py": "", "apps/newapp/models.py": "from apps.core import models\n"},
        "Apps import only the layers below them",
        "not listed as layers: - apps.newapp",
    ),
    "an app imports hub": (
        {"apps/chat/settings_peek.py": "from hub import urls\n"},
        "Apps never import the project package",
        "apps.chat.settings_peek -> hub.urls",
    ),
    "a connector uses the ORM": (
        {"connectors/orm.py": "from django.db import models\n"},
        "Connectors are pure",
        "connectors.orm -> django",
    ),
    "an api package imports another one": (
        {"apps/chat/api/borrowed.py": "from apps.tenants.api import views\n"},
        "API packages are imported only by hub",
        "apps.chat.api.borrowed -> apps.tenants.api.views",
    ),
    "two modules of an app import each other": (
        {
            "apps/policies/ping.py": "from apps.policies import pong\n",
            "apps/policies/pong.py": "def back():\n    from apps.policies import ping\n",
        },
        "No import cycles between the modules of a package",
        "No cycles are allowed in apps.policies",
    ),
}


@pytest.mark.parametrize(("files", "contract", "reported"), CASES.values(), ids=CASES.keys())
def test_a_new_violation_breaks_its_contract(
    add_module: tuple[Path, list[Path]], files: dict[str, str], contract: str, reported: str
) -> None:
    tree, added = add_module
    for name, text in files.items():
        path = tree / name
        if not path.parent.exists():
            path.parent.mkdir(parents=True)
            added.append(path.parent)
        else:
            added.append(path)
        path.write_text(text)
    result = _lint_imports(tree)
    output = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    assert result.returncode != 0, output[-3000:]
    assert f"{contract} BROKEN" in output, output[-3000:]
    assert reported in output, output[-3000:]
