"""Shared fixtures for the whole suite (keep this small; per-area fixtures live in their folders)."""

from __future__ import annotations

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
