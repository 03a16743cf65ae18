"""Reverse-mode gradients: stop_gradient, several paths, sparse gathers, broadcasting, variables."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


def test_stop_gradient_blocks_one_path(graph):
    x = hk.placeholder(hk.float64, [3])
    y = hk.reduce_sum(x * hk.stop_gradient(x))
    (g,) = hk.gradients(y, [x])
    xv = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(hk.Session(graph).run(g, {x: xv}), xv)
    assert hk.gradients(hk.reduce_sum(hk.stop_gradient(x)), [x]) == [None]


def test_gradients_from_several_paths_are_summed(graph):
    x = hk.placeholder(hk.float64, [2])
    y = hk.reduce_sum(x * x + 3.0 * x + hk.exp(x))
    (g,) = hk.gradients(y, [x])
    assert any(n.op == "AddN" for n in graph.nodes)
    xv = np.array([0.5, -1.0])
    np.testing.assert_allclose(hk.Session(graph).run(g, {x: xv}), 2 * xv + 3 + np.exp(xv))


def test_several_ys_and_grad_ys(graph):
    x = hk.placeholder(hk.float64, [2])
    g1, = hk.gradients([x * 2.0, x * x], [x])
    g2, = hk.gradients(x * x, [x], grad_ys=[np.array([1.0, 10.0])])
    got = hk.Session(graph).run([g1, g2], {x: [1.0, 3.0]})
    np.testing.assert_allclose(got[0], [4.0, 8.0])
    np.testing.assert_allclose(got[1], [2.0, 60.0])


def test_unrelated_and_integer_paths_give_none(graph):
    x = hk.placeholder(hk.float32, [2])
    z = hk.placeholder(hk.float32, [2])
    i = hk.placeholder(hk.int32, [2])
    y = hk.reduce_sum(x * hk.cast(i, hk.float32))
    assert hk.gradients(y, [z, i])[0] is None
    assert hk.gradients(y, [i]) == [None]
    with pytest.raises(hk.GraphError, match="must be float"):
        hk.gradients(hk.reduce_sum(i), [i])


def test_gather_gradient_is_indexed_slices_aggregated_and_densified(graph):
    table = hk.Variable(np.arange(10, dtype=np.float32).reshape(5, 2), name="table")
    ids1 = hk.constant([0, 3, 3])
    ids2 = hk.constant([[4], [0]], dtype=hk.int64)
    t = table.tensor(graph)
    loss = hk.reduce_sum(hk.gather(t, ids1) * 2.0) + hk.reduce_sum(hk.gather(t, ids2))
    (g,) = hk.gradients(loss, [table])
    assert isinstance(g, hk.IndexedSlices)
    assert g.dense is t and g.indices.dtype is hk.int64
    values, indices, dense = hk.Session(graph).run([g.values, g.indices, g.to_dense()])
    want = np.zeros((5, 2), np.float32)
    np.add.at(want, [0, 3, 3], 2.0)
    np.add.at(want, [4, 0], 1.0)
    np.testing.assert_allclose(dense, want)
    assert values.shape == (5, 2) and indices.shape == (5,)
    # Mixed sparse and dense paths densify and add.
    (gd,) = hk.gradients(loss + hk.reduce_sum(t), [table])
    assert isinstance(gd, hk.Tensor)
    np.testing.assert_allclose(hk.Session(graph).run(gd), want + 1)


def test_broadcasting_gradients_sum_back(graph):
    x = hk.placeholder(hk.float32, [None, 3])
    b = hk.placeholder(hk.float32, [3])
    s = hk.placeholder(hk.float32, [])
    col = hk.placeholder(hk.float32, [None, 1])
    y = hk.reduce_sum((x + b) * s * col)
    gx, gb, gs, gc = hk.gradients(y, [x, b, s, col])
    assert gb.shape == (3,) and gs.shape == () and gc.shape == (None, 1)
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    feed = {x: xv, b: np.ones(3), s: 2.0, col: [[1.0], [3.0]]}
    got = hk.Session(graph).run([gx, gb, gs, gc], feed)
    np.testing.assert_allclose(got[0], np.array([[2.0] * 3, [6.0] * 3]))
    np.testing.assert_allclose(got[1], [8.0, 8.0, 8.0])
    np.testing.assert_allclose(got[2], ((xv + 1) * [[1.0], [3.0]]).sum())
    np.testing.assert_allclose(got[3], 2 * (xv + 1).sum(1, keepdims=True))
    assert all(v.dtype == np.float32 for v in got)


def test_gradient_with_respect_to_a_variable_and_matmul(graph):
    w = hk.Variable(np.ones((3, 2), np.float32), name="w")
    x = hk.placeholder(hk.float32, [None, 3])
    loss = hk.reduce_mean(hk.square(hk.matmul(x, w)))
    (gw,) = hk.gradients(loss, [w])
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    pred = xv @ np.ones((3, 2))
    want = xv.T @ (2 * pred / pred.size)
    np.testing.assert_allclose(hk.Session(graph).run(gw, {x: xv}), want, rtol=1e-6)
