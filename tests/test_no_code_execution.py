"""No code under hubkit/ can execute code from data: no unpickling, no eval, no dynamic imports.

A static check over every file's syntax tree, so it covers code paths no test runs (the runtime check
that loading never unpickles is tests/module/test_format_errors.py::test_loading_never_unpickles).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hubkit"

# Modules whose loaders run code from the data they read.
FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "yaml"}
# Builtins that run or import code named by a string.
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}


def _violations_in_tree(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every forbidden import or call in ``tree``."""
    numpy_names = {"numpy"}  # names bound to the numpy module
    numpy_load_names: set[str] = set()  # names bound to numpy.load
    importlib_names = {"importlib"}
    import_module_names: set[str] = set()
    for node in ast.walk(tree):  # aliases first, wherever they are bound
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "numpy":
                    numpy_names.add(alias.asname or "numpy")
                elif alias.name == "importlib":
                    importlib_names.add(alias.asname or "importlib")
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                if node.module == "numpy" and alias.name == "load":
                    numpy_load_names.add(alias.asname or "load")
                elif node.module == "importlib" and alias.name == "import_module":
                    import_module_names.add(alias.asname or "import_module")

    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS | import_module_names:
                found.append((node.lineno, f"call to {func.id}()"))
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                owner, attr = func.value.id, func.attr
                if owner == "builtins" and attr in FORBIDDEN_BUILTINS:
                    found.append((node.lineno, f"call to builtins.{attr}()"))
                elif owner in importlib_names and attr == "import_module":
                    found.append((node.lineno, f"call to {owner}.import_module()"))
            is_numpy_load = (isinstance(func, ast.Name) and func.id in numpy_load_names) or (
                isinstance(func, ast.Attribute)
                and func.attr == "load"
                and isinstance(func.value, ast.Name)
                and func.value.id in numpy_names
            )
            if is_numpy_load:
                for kw in node.keywords:
                    allowed = isinstance(kw.value, ast.Constant) and kw.value.value is False
                    if (kw.arg == "allow_pickle" and not allowed) or kw.arg is None:
                        found.append((node.lineno, "numpy load with allow_pickle (or **kwargs that may set it)"))
    return sorted(found)


def violations(root: Path) -> list[str]:
    """``file:line: what`` for every forbidden import or call in the Python files under ``root``."""
    messages = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        rel = path.relative_to(root.parent).as_posix()
        messages.extend(f"{rel}:{line}: {what}" for line, what in _violations_in_tree(tree))
    return messages


def test_hubkit_never_imports_unpickling_modules_nor_evaluates_code():
    files = list(PACKAGE.rglob("*.py"))
    assert len(files) > 50 and PACKAGE / "module" / "module.py" in files  # the scan sees the package
    found = violations(PACKAGE)
    assert not found, "code execution from data is forbidden in hubkit/:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import pickle",
        "import pickle as p",
        "import os, marshal",
        "from shelve import open",
        "import dill",
        "from cloudpickle import loads",
        "import yaml",
        "from yaml.loader import UnsafeLoader",
        "from _pickle import loads",
        "def f(s):\n    return eval(s)",
        "exec('x = 1')",
        "code = compile('1', 'f', 'eval')",
        "m = __import__('os')",
        "import builtins\nbuiltins.eval('1')",
        "import importlib\nimportlib.import_module('os')",
        "import importlib as il\nil.import_module('os')",
        "from importlib import import_module\nimport_module('os')",
        "from importlib import import_module as im\nim('os')",
        "import numpy as np\nnp.load('f.npy', allow_pickle=True)",
        "import numpy\nnumpy.load('f.npy', allow_pickle=flag)",
        "import numpy as xp\nxp.load('f.npy', **options)",
        "from numpy import load\nload('f.npy', allow_pickle=True)",
    ],
)
def test_the_check_finds_each_forbidden_form(source, tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "mod.py").write_text("x = 1\n" + source + "\n")
    found = violations(package)
    assert found and all(message.startswith("pkg/sub/mod.py:") for message in found), found
    assert int(found[0].split(":")[1]) >= 2  # the line of the offending statement, not of the file


@pytest.mark.parametrize(
    "source",
    [
        "import re\nre.compile('a+')",
        "import numpy as np\nnp.load('f.npy')",
        "import numpy as np\nnp.load('f.npy', allow_pickle=False, mmap_mode='r')",
        "import json\njson.loads('{}')",
        "model.compile(optimizer='adam')",
        "doc = 'eval(x) and import pickle, in a string'",
        "def evaluate(x):\n    return x",
    ],
)
def test_the_check_allows_safe_lookalikes(source, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(source + "\n")
    assert violations(tmp_path / "pkg") == []
