"""Every third-party module the tests import is declared in pyproject.toml.

The tests, and the test kit they use (`flick/testing`), run from `pip install -e '.[test]'`: a
module that is only there because something else pulled it in would break the day that changes.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from flick.testing.python_source import parse

ROOT = Path(__file__).resolve().parent.parent
SCANNED = [ROOT / "tests", ROOT / "flick" / "testing"]
OURS = {"flick", "tests", "bench", "conftest"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> dict[str, set[str]]:
    """Top-level module name -> the files importing it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for folder in SCANNED:
        for path in folder.rglob("*.py"):
            for node in ast.walk(parse(path)):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    return {_normalize(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0]) for req in requirements}


def test_every_imported_module_is_declared_for_the_tests() -> None:
    declared = declared_distributions()
    providers = packages_distributions()
    missing = {}
    for module, files in sorted(imported_modules().items()):
        if module in OURS or module in sys.stdlib_module_names:
            continue
        dists = {_normalize(d) for d in providers.get(module, [])}
        if not dists & declared:
            missing[module] = (sorted(dists), sorted(files))
    assert missing == {}, f"declare these in [project.optional-dependencies] test: {missing}"
