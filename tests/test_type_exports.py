"""hubkit/__init__.py is one explicit import list that mypy reads as it is, and it names the whole public API.

There is no computed ``globals()`` copy and no star import: every public name is imported by name
from the module that defines it, and ``__all__`` is a literal list of exactly those names (plus the
namespaces). The subpackages' own lists (``__all__``, ``__top_level__``) must all be lifted.
"""

import ast
import importlib
from pathlib import Path

import hubkit
import hubkit.ops.api

_INIT = ast.parse(Path(hubkit.__file__).read_text(encoding="utf-8"))


def _imported_names() -> dict[str, str]:
    """Bound name -> the module it is imported from, for every import statement of hubkit/__init__.py."""
    out: dict[str, str] = {}
    for stmt in _INIT.body:
        if isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                assert alias.name != "*", f"star import from {stmt.module}"
                out[alias.asname or alias.name] = stmt.module or ""
        else:
            assert not isinstance(stmt, ast.Import), "plain imports in hubkit/__init__.py"
    return out


def _literal_all() -> list[str]:
    for stmt in _INIT.body:
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in stmt.targets):
            return ast.literal_eval(stmt.value)
    raise AssertionError("hubkit/__init__.py has no literal __all__")


def test_init_is_one_explicit_import_list():
    source = Path(hubkit.__file__).read_text(encoding="utf-8")
    assert "globals()" not in source and "TYPE_CHECKING" not in source
    names = _imported_names()
    assert sorted(_literal_all()) == sorted(names) == sorted(hubkit.__all__)
    for name, module in names.items():
        if module != "hubkit":  # namespaces are submodules
            source_name = next(a.name for s in _INIT.body if isinstance(s, ast.ImportFrom) and s.module == module
                               for a in s.names if (a.asname or a.name) == name)
            assert getattr(importlib.import_module(module), source_name) is getattr(hubkit, name), name


def test_every_subpackage_list_is_lifted():
    import hubkit.errors
    import hubkit.graph
    import hubkit.hub
    import hubkit.module
    import hubkit.runtime

    expected = set(hubkit.ops.api.__all__) | set(hubkit.errors.__all__) | set(hubkit.graph.__all__)
    expected |= set(hubkit.runtime.__all__) | set(hubkit.ops.__all__)
    for package in (hubkit.module, hubkit.hub, hubkit.layers, hubkit.train, hubkit.text):
        expected |= set(package.__top_level__)
    assert sorted(expected - set(hubkit.__all__)) == []
    for name in ("convert", "load_module_spec", "Module", "HubLayer", "Checkpoint", "resolve", "__version__"):
        assert name in hubkit.__all__
