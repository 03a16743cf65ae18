"""Issue 9, defect 9: a chain of thousands of elementwise ops compiles (and fuses) without recursion."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.runtime.fusion import FusedChain

pytest.importorskip("numba")


@pytest.mark.parametrize("length", [1_200, 5_000])
def test_a_long_elementwise_chain_compiles_fuses_and_matches_numpy(graph, length):
    x = hk.placeholder(hk.float32, [None], name="x")
    y = x
    for i in range(length):
        y = y * 0.999 + 0.001 if i % 2 else hk.nn.relu(y) - 0.0005
    data = np.linspace(-1.0, 2.0, 20_000, dtype=np.float32)
    sess = hk.Session(graph)
    got = sess.run(y, {x: data})
    want = data.copy()
    for i in range(length):
        want = (want * np.float32(0.999) + np.float32(0.001)) if i % 2 else np.maximum(want, 0) - np.float32(0.0005)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    plan = sess.plan([y], [x])
    assert any(isinstance(step.fn, FusedChain) for step in plan.steps)
