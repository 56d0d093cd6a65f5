"""Every test can fail: each test function asserts something.

A test that only runs code passes whatever that code does (short of an exception), so it checks
much less than its name says. Every `test_*` function under tests/ must contain an `assert`, a
`pytest.raises(...)`, or a call to a helper named `assert_*` / `expect_*` (which asserts itself).
"""

from __future__ import annotations

import ast
from pathlib import Path

from flick.testing.python_source import parse

TESTS = Path(__file__).resolve().parent


def _asserts(node: ast.AST) -> bool:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Assert):
            return True
        if isinstance(inner, ast.Call):
            func = inner.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "raises" or name.startswith(("assert_", "expect_")):
                return True
    return False


def unasserted_tests() -> list[str]:
    found = []
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = parse(path)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name.startswith("test")
                and not _asserts(node)
            ):
                found.append(f"{path.relative_to(TESTS.parent)}::{node.name}")
    return found


def test_every_test_function_asserts_something() -> None:
    assert unasserted_tests() == []


def test_the_scan_finds_a_test_without_assertions() -> None:
    tree = ast.parse("async def test_runs_only():\n    await send()\n")
    (function,) = tree.body
    assert not _asserts(function)
    for body in ("assert x", "with pytest.raises(E):\n    f()", "h.assert_sent(1)", "expect_ok()"):
        assert _asserts(ast.parse(body)), body
