"""The Numba switch: never imported by ``import hubkit``, off with HUBKIT_NUMBA=0, cached on disk."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from hubkit.ops import _numba

HAVE_NUMBA = importlib.util.find_spec("numba") is not None


def python(code: str, **env: str) -> str:
    full_env = {k: v for k, v in os.environ.items() if k not in ("HUBKIT_NUMBA", "NUMBA_CACHE_DIR")}
    full_env.update(env)
    done = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_import_hubkit_does_not_import_numba():
    assert python("import sys, hubkit; print('numba' in sys.modules)") == "False"


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_environment_switch_selects_kernels():
    code = "from hubkit.ops import _numba; print(_numba.numba_enabled())"
    assert python(code) == "True"
    assert python(code, HUBKIT_NUMBA="0") == "False"
    assert python(code, HUBKIT_NUMBA="off") == "False"


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_kernels_are_cached_in_the_configured_directory(tmp_path):
    code = (
        "import numpy as np; from hubkit.ops import _numba, _numba_kernels as k\n"
        "f = _numba.kernel(k.sparse_combine_grad)\n"
        "f(np.ones((1, 2)), np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(0), False, 2, np.zeros(1),"
        " np.empty((1, 2)), np.empty(1, np.int64))\n"
        "print(_numba.cache_dir())"
    )
    assert python(code, NUMBA_CACHE_DIR=str(tmp_path)) == str(tmp_path)
    assert any(p.suffix in (".nbi", ".nbc") for p in tmp_path.rglob("*"))


def test_default_cache_dir_is_inside_hubkits_cache(monkeypatch):
    import platformdirs

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert _numba.cache_dir() == os.path.join(platformdirs.user_cache_dir("hubkit"), "numba")


def test_set_numba_enabled_forces_and_restores():
    try:
        assert _numba.set_numba_enabled(False) is False
        assert _numba.kernel(lambda: None) is None
    finally:
        _numba.set_numba_enabled(None)
    assert _numba.numba_enabled() == (HAVE_NUMBA and os.environ.get("HUBKIT_NUMBA", "1") != "0")
