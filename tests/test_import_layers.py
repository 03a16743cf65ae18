"""Imports point down the layers of docs/architecture.md; this check parses hubkit/ and fails on any arrow up.

Every import statement counts, including those inside functions and ``TYPE_CHECKING`` blocks: a lazy
import is still a dependency. A unit may import its own package, any unit of a lower rank, and any
unit of the same rank. The one accepted upward arrow is the seam ``hubkit/module/loader.py -> hubkit.hub``
(``Module(url)`` resolves a handle). ``hubkit.dask`` sits on top and uses only the public API
(``import hubkit``). A new top-level package or module must be placed in ``RANKS`` (and in the
architecture document) before it can be imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "hubkit"

# unit (first name under hubkit.) -> rank; see docs/architecture.md, "The layers".
RANKS: dict[str, int] = {
    "errors": 0, "_version": 0, "_fileio": 0,  # leaves: no hubkit imports of their own
    "graph": 1,
    "ops": 2,
    "runtime": 3,
    "initializers": 4, "regularizers": 4, "nn": 4, "losses": 4, "sparse": 4,  # public namespaces over ops and runtime
    "format": 5, "module": 5, "importers": 5, "exporters": 5,
    "hub": 6,
    "text": 7, "layers": 7,
    "train": 8,
    "cli": 9, "__main__": 9, "": 9,  # "" is the package facade, hubkit/__init__.py
    "dask": 10,  # integrations: the public API only
}
SEAMS = {
    ("module/loader.py", "hub"),  # Module(url): the module layer asks the hub to resolve a handle
}
PUBLIC_ONLY = {"dask"}


def _unit_of_module(dotted: str, root: Path = ROOT) -> str:
    """``hubkit.ops.api`` -> ``ops``; ``hubkit`` -> ``""``; ``hubkit.__version__`` (an attribute) -> ``""``."""
    parts = dotted.split(".")
    if len(parts) == 1:
        return ""
    name = parts[1]
    if (root / name).is_dir() or (root / f"{name}.py").is_file():
        return name
    return ""  # an attribute of the package facade


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path) -> list[tuple[int, str, ast.AST]]:
    """``(line, imported hubkit module or facade attribute, statement)`` of every hubkit import in ``path``."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, str(path))
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module == "hubkit":
                targets = [f"hubkit.{a.name}" for a in node.names]
            else:
                targets = [module]
        for target in targets:
            if target == "hubkit" or target.startswith("hubkit."):
                out.append((node.lineno, target, node))
    return out


def find_violations(root: Path = ROOT) -> list[str]:
    """One line per import that runs up the layers (or comes from or goes to an unplaced unit)."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        unit = _unit_of_module(_module_name(path, root), root)
        if unit not in RANKS:
            problems.append(f"hubkit/{rel}: unit {unit!r} has no layer; add it to RANKS and docs/architecture.md")
            continue
        for line, target, node in _imports(path, root):
            to = _unit_of_module(target, root)
            if to == unit:
                continue
            text = ast.unparse(node)
            if unit in PUBLIC_ONLY:
                if target != "hubkit" and to != "":
                    problems.append(f"hubkit/{rel}:{line}: {text!r} -- hubkit.{unit} uses only the public API (import hubkit)")
                continue
            if to not in RANKS:
                problems.append(f"hubkit/{rel}:{line}: {text!r} imports unit {to!r}, which has no layer")
            elif RANKS[to] > RANKS[unit] and (rel, to) not in SEAMS:
                problems.append(
                    f"hubkit/{rel}:{line}: {text!r} points up, from {unit or 'hubkit'!r} (rank {RANKS[unit]}) "
                    f"to {to or 'hubkit'!r} (rank {RANKS[to]})"
                )
    return problems


def test_imports_point_down_the_layers():
    problems = find_violations()
    for p in problems:
        print(p)
    assert problems == [], "imports that run up the layers:\n" + "\n".join(problems)


def test_the_check_sees_lazy_relative_and_facade_imports(tmp_path):
    """The checker itself: an upward lazy import, a relative import and a facade attribute are all caught."""
    fake = tmp_path / "hubkit"
    for d in ("graph", "runtime", "hub", "module", "dask"):
        (fake / d).mkdir(parents=True)
        (fake / d / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "graph" / "g.py").write_text("def f():\n    from hubkit.runtime import x\n")
    (fake / "runtime" / "r.py").write_text("from ..hub import y\n")
    (fake / "runtime" / "v.py").write_text("from hubkit import __version__\n")
    (fake / "module" / "loader.py").write_text("from hubkit.hub import resolve\n")  # the seam
    (fake / "module" / "other.py").write_text("from hubkit.hub import resolve\n")
    (fake / "dask" / "d.py").write_text("import hubkit\nfrom hubkit.runtime import Session\n")
    problems = find_violations(fake)
    text = "\n".join(problems)
    assert "hubkit/graph/g.py:2: 'from hubkit.runtime import x' points up" in text
    assert "hubkit/runtime/r.py:1: 'from ..hub import y' points up" in text
    assert "hubkit/runtime/v.py:1: 'from hubkit import __version__' points up, from 'runtime' (rank 3) to 'hubkit'" in text
    assert "module/loader.py" not in text and "hubkit/module/other.py:1" in text
    assert "hubkit/dask/d.py:2: 'from hubkit.runtime import Session' -- hubkit.dask uses only the public API" in text
    assert len(problems) == 5
