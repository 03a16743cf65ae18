"""Fixtures of the text tests: run a test with the NumPy kernels and again with the Numba kernels."""

from __future__ import annotations

import importlib.util

import pytest

from hubkit.ops import _numba

HAVE_NUMBA = importlib.util.find_spec("numba") is not None


@pytest.fixture(
    params=["numpy", pytest.param("numba", marks=pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed"))]
)
def kernels(request):
    """Selects the NumPy or the Numba kernels for the test, and restores the default afterwards."""
    _numba.set_numba_enabled(request.param == "numba")
    assert _numba.numba_enabled() == (request.param == "numba")
    yield request.param
    _numba.set_numba_enabled(None)
