"""Shared fixtures for the whole suite (keep this small; per-area fixtures live in their folders)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# `from tests.helpers_fd import check_vjp` works however pytest was started.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import hubkit as hk  # noqa: E402


@pytest.fixture
def graph() -> Iterator[hk.Graph]:
    """A fresh graph, installed as the default graph for the test."""
    g = hk.Graph()
    with g.as_default():
        yield g


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator, so failures reproduce."""
    return np.random.default_rng(0)


@pytest.fixture(
    params=[
        "numpy",
        pytest.param("numba", marks=pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                                       reason="numba not installed")),
    ]
)
def kernels(request):
    """Runs the test with the NumPy kernels and again with the Numba kernels, restoring the default after."""
    from hubkit.ops import _numba

    _numba.set_numba_enabled(request.param == "numba")
    assert _numba.numba_enabled() == (request.param == "numba")
    yield request.param
    _numba.set_numba_enabled(None)
