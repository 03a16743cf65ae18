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


@pytest.fixture(autouse=True, scope="session")
def _private_hub_cache(tmp_path_factory) -> Iterator[None]:
    """No test writes to the user's real hubkit cache: the whole session (and its subprocesses) gets its own.

    Tests that need a cache of their own still set ``HUBKIT_CACHE_DIR`` themselves (``hub_env``); this only
    catches the ones that forget, or that undo their monkeypatches before resolving.
    """
    import os

    previous = os.environ.get("HUBKIT_CACHE_DIR")
    os.environ["HUBKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("hubkit-cache"))
    yield
    if previous is None:
        os.environ.pop("HUBKIT_CACHE_DIR", None)
    else:
        os.environ["HUBKIT_CACHE_DIR"] = previous


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
