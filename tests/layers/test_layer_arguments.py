"""Layer sizes must be positive integers; anything else is a GraphError naming the layer and argument."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit import layers as L


@pytest.mark.parametrize("bad", ["a", 0, -2, 2.5, True, None])
@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda v: L.Dense(v, name="d"), "units"),
        (lambda v: L.Conv2D(v, 3, name="d"), "filters"),
        (lambda v: L.Embedding(v, 3, name="d"), "input_dim"),
        (lambda v: L.Embedding(10, v, name="d"), "output_dim"),
    ],
)
def test_sizes_must_be_positive_integers(make, what, bad):
    with pytest.raises(hk.GraphError, match=rf"Layer 'd': {what} must be a positive integer, got {bad!r}"):
        make(bad)


def test_numpy_integers_are_accepted():
    assert L.Dense(np.int64(3)).units == 3
