"""The TYPE_CHECKING imports in hubkit/__init__.py name exactly what mypy cannot see by itself.

mypy reads only literal ``__all__`` lists, so the op functions gathered by hubkit.ops.api and the
names lifted by the ``__top_level__`` loop are shown to it by explicit imports; this test keeps
those imports in step with the runtime lists (mypy itself is not run by the test suite).
"""

import ast
import importlib
from pathlib import Path

import hubkit
import hubkit.ops.api


def _type_checking_names() -> set[str]:
    tree = ast.parse(Path(hubkit.__file__).read_text(encoding="utf-8"))
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1
    names: set[str] = set()
    for stmt in blocks[0].body:
        assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
        for alias in stmt.names:
            if alias.name == "*":
                names.update(importlib.import_module(stmt.module).__all__)
            else:
                # `from m import x as x` is an explicit re-export for mypy --no-implicit-reexport.
                assert alias.asname == alias.name, alias.name
                assert getattr(importlib.import_module(stmt.module), alias.name) is getattr(hubkit, alias.name)
                names.add(alias.name)
    return names


def test_type_checking_imports_match_runtime_exports():
    expected = set(hubkit.ops.api.__all__) | set(hubkit._lifted)
    names = _type_checking_names()
    assert sorted(expected - names) == []
    assert sorted(names - expected) == []
    assert names <= set(hubkit.__all__)
