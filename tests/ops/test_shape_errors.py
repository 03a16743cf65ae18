"""Shape-family errors caught at build time (or named at run time) instead of inside NumPy."""

import numpy as np
import pytest

import hubkit as hk


def test_reshape_of_a_partly_known_shape_to_an_impossible_size_fails_at_build_time(graph):
    x = hk.placeholder(hk.float32, [None, 4])
    with pytest.raises(hk.GraphError, match=r"Reshape node .*15 elements is never a multiple of 4"):
        hk.reshape(x, [5, 3])
    assert hk.reshape(x, [8]).shape == (8,)
    assert hk.reshape(x, [2, 2, -1]).shape == (2, 2, None)


def test_one_hot_refuses_a_negative_depth(graph):
    with pytest.raises(hk.GraphError, match="depth must be non-negative"):
        hk.one_hot(hk.constant([1]), -3)


def test_gather_refuses_negative_indices_instead_of_wrapping(graph):
    params = hk.constant(np.arange(6, dtype=np.float32).reshape(3, 2))
    ids = hk.placeholder(hk.int64, [None])
    out = hk.gather(params, ids)
    sess = hk.Session(graph)
    np.testing.assert_array_equal(sess.run(out, {ids: [2, 0]}), [[4, 5], [0, 1]])
    with pytest.raises(hk.OpError, match="index -1 is negative"):
        sess.run(out, {ids: [-1]})
