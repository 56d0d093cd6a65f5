"""Python files read as syntax trees, for the tests that check the code itself (every test
asserts, every import is declared, every plural gets its count)."""

from __future__ import annotations

import ast
from pathlib import Path

#: CPython 3.11 keeps the AST constructor's recursion depth per interpreter, not per call: a
#: thread building a tree at the same moment (traceback's caret anchors parse a line whenever a
#: traceback is formatted) makes `ast.parse` fail with a spurious "SystemError: AST
#: constructor recursion depth mismatch" (python/cpython#106905). The parse itself is sound, so
#: it is done again; a real SystemError fails every attempt.
ATTEMPTS = 5


def parse(path: Path) -> ast.Module:
    source = path.read_text(encoding="utf-8")
    for attempt in range(ATTEMPTS):
        try:
            return ast.parse(source, str(path))
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
