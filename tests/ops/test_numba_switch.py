"""The Numba switch: never imported by ``import hubkit``, off with HUBKIT_NUMBA=0, cached on disk;
helpers shared by kernels (``_numba.helper``): compiled only inside a kernel that calls them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from hubkit.ops import _epilogue, _numba

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not _numba.numba_enabled(), reason="Numba is off or not installed")


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


@_numba.helper
def clamp01(v):
    zero, one = type(v)(0), type(v)(1)
    return zero if v < zero else one if v > one else v


@_numba.helper
def uncompilable(v):
    return open(v)  # Numba cannot compile open(): it fails only when a kernel calls this


def clamp_kernel(x):  # pragma: no cover - compiled by Numba
    for i in range(x.shape[0]):
        x[i] = clamp01(x[i])


def clamp_relu6_kernel(x, out):  # pragma: no cover - compiled by Numba
    for i in range(x.shape[0]):  # a helper by name and one as a module attribute
        out[i] = clamp01(x[i]) + _epilogue.activate(x[i], _epilogue.RELU6)


def uncompilable_kernel(x):  # pragma: no cover - compiled by Numba
    x[0] = uncompilable(x[0])


@needs_numba
def test_one_helper_serves_two_kernels():
    x = np.array([-2.0, -0.0, 0.25, 3.0, 9.0, np.nan], np.float32)
    want = np.array([0.0, -0.0, 0.5, 4.0, 7.0, np.nan], np.float32)
    out = np.empty_like(x)
    _numba.kernel(clamp_relu6_kernel)(x, out)
    np.testing.assert_array_equal(out, want)
    _numba.kernel(clamp_kernel)(x)
    np.testing.assert_array_equal(x, [0.0, 0.0, 0.25, 1.0, 1.0, np.nan])
    assert clamp01(np.float32(3)) == 1  # still a plain Python function


@needs_numba
def test_a_helper_is_compiled_only_inside_a_kernel_that_calls_it():
    _numba.kernel(clamp_kernel)(np.zeros(2))  # uncompilable is marked too, and not compiled
    with pytest.raises(Exception, match="open"):
        _numba.kernel(uncompilable_kernel)(np.zeros(1))


def test_marking_helpers_imports_nothing():
    code = (
        "import sys; from hubkit.ops import _epilogue, _numba, _small_linear, conv_nchw\n"
        "print('numba' in sys.modules, _epilogue.activate in _numba._STATE.helpers, any(_numba._STATE.helpers.values()))"
    )
    assert python(code) == "False True False"


def test_without_numba_kernels_fall_back_to_numpy():
    code = (
        "import sys; sys.modules['numba'] = None  # as if not installed\n"
        "import numpy as np; from hubkit.ops import _epilogue, _numba, conv_nchw\n"
        "x = np.array([[-1.0, -0.0, 2.0, 7.0]], np.float32)\n"
        "y = _epilogue.bias_act_(x.copy(), None, _epilogue.RELU6)\n"
        "z = conv_nchw.epilogue_nchw_(x.reshape(1, 1, 4).copy(), None, None, _epilogue.RELU)\n"
        "print(_numba.kernel(_epilogue.bias_act_kernel), y.tolist(), z.ravel().tolist(), _epilogue.activate(-1.0, 1))"
    )
    assert python(code) == "None [[0.0, -0.0, 2.0, 6.0]] [0.0, 0.0, 2.0, 7.0] 0.0"


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_editing_a_helper_recompiles_the_cached_kernels_that_call_it(tmp_path):
    # Numba's own cache checks only the kernel's file: the kernel would keep the helper's old code.
    (tmp_path / "helper_mod.py").write_text(
        "from hubkit.ops import _numba\n\n@_numba.helper\ndef offset(v):\n    return v + 1.0\n"
    )
    (tmp_path / "kernel_mod.py").write_text(
        "from helper_mod import offset\n\ndef kern(x):\n    x[0] = offset(x[0])\n"
    )
    code = (
        "import numpy as np, kernel_mod; from hubkit.ops import _numba\n"
        "x = np.zeros(1); _numba.kernel(kernel_mod.kern)(x); print(x[0])"
    )
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(tmp_path)}
    assert python(code, **env) == "1.0"
    assert python(code, **env) == "1.0"  # from the cache
    (tmp_path / "helper_mod.py").write_text((tmp_path / "helper_mod.py").read_text().replace("1.0", "2.0"))
    assert python(code, **env) == "2.0"
