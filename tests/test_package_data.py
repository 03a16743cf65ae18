"""Every data file of the hubkit package (a .proto, a stub, the catalog page) ships in the wheel."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hubkit"


def test_every_non_python_file_of_the_package_is_declared_as_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["hubkit"]
    data_files = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    )
    assert "module/image_module_info.proto" in data_files
    unshipped = [f for f in data_files if not any(fnmatch.fnmatchcase(f, p) for p in patterns)]
    assert not unshipped, f"files under hubkit/ that the wheel would leave out: {unshipped}; add them to package-data"
