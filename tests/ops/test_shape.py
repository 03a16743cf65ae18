"""Shape, indexing, gather and scatter ops against NumPy, with their shape rules and errors."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk

X = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
Y = np.arange(6, dtype=np.float32).reshape(2, 3)

FORWARD = [
    (lambda x: hk.reshape(x, [4, -1]), lambda x: x.reshape(4, -1), [X]),
    (lambda x: hk.reshape(x, [-1]), lambda x: x.reshape(-1), [X]),
    (lambda x: hk.transpose(x, [2, 0, 1]), lambda x: x.transpose(2, 0, 1), [X]),
    (hk.transpose, np.transpose, [X]),
    (lambda x, y: hk.concat([x, y, x], axis=1), lambda x, y: np.concatenate([x, y, x], 1), [Y, Y[:, :1]]),
    (lambda x, y: hk.stack([x, y], axis=-1), lambda x, y: np.stack([x, y], -1), [Y, Y + 1]),
    (lambda x: hk.squeeze(x), np.squeeze, [X[:1, :, None]]),
    (lambda x: hk.squeeze(x, [0]), lambda x: x[0], [X[:1]]),
    (lambda x: hk.expand_dims(x, 1), lambda x: x[:, None], [X]),
    (lambda x: hk.expand_dims(x, -1), lambda x: x[..., None], [X]),
    (lambda x: hk.slice(x, [1, 0, 2], [1, -1, 2]), lambda x: x[1:2, 0:, 2:4], [X]),
    (lambda x: hk.tile(x, [2, 1, 3]), lambda x: np.tile(x, [2, 1, 3]), [X]),
    (lambda x: hk.pad(x, [[1, 2], [0, 1]]), lambda x: np.pad(x, [[1, 2], [0, 1]]), [Y]),
    (lambda x: hk.pad(x, [[0, 0], [2, 0]], constant_values=7), lambda x: np.pad(x, [[0, 0], [2, 0]], constant_values=7), [Y]),
    (lambda x: hk.gather(x, [2, 0, 2]), lambda x: x[[2, 0, 2]], [Y.T]),
    (lambda x: hk.gather(x, [[1], [0]], axis=2), lambda x: np.take(x, [[1], [0]], axis=2), [X]),
    (lambda x: hk.zeros_like(x) + hk.fill([2, 3], 5.0), lambda x: np.full((2, 3), 5.0, np.float32), [Y]),
    (lambda x: hk.zeros([2, 3]) + x, lambda x: x, [Y]),
    (lambda x: hk.ones(hk.shape(x)) * x, lambda x: x, [X]),
    (lambda x: hk.scatter_to_dense(x, [2, 0], hk.zeros([4, 3])), lambda x: np.array([x[1], 0 * x[0], x[0], 0 * x[0]]), [Y]),
    (lambda x: hk.scatter_to_dense(x, [1, 1], hk.zeros([2, 3])), lambda x: np.array([0 * x[0], x[0] + x[1]]), [Y]),
    (lambda x: hk.unsorted_segment_sum(x, [2, 0, 2], 4), lambda x: np.array([x[1], 0 * x[0], x[0] + x[2], 0 * x[0]]), [Y.T]),
    (lambda x: hk.segment_sum(x, [0, 0, 1]), lambda x: np.array([x[0] + x[1], x[2]]), [Y.T]),
]


@pytest.mark.parametrize(("fn", "ref", "inputs"), FORWARD, ids=[str(i) for i in range(len(FORWARD))])
def test_forward_matches_numpy(graph, fn, ref, inputs):
    phs = [hk.placeholder(hk.float32, [None] * x.ndim) for x in inputs]
    static = fn(*[hk.constant(x) for x in inputs])
    out = fn(*phs)
    got, got_static = hk.Session(graph).run([out, static], dict(zip(phs, inputs)))
    want = ref(*inputs)
    assert static.shape == want.shape, "static shapes are exact when inputs are fully known"
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_static, want)


KEYS = [
    1, -1, (0, 1), (slice(None), 2), (Ellipsis, 1), (None, 0), (0, None, slice(1, None)),
    (slice(None, None, -1),), (slice(1, None, 2), slice(None, None, -2), -1), (Ellipsis,), (0, Ellipsis, None),
    (slice(-2, None), slice(None, -1)), (slice(5, 10),), (1, -3, -4),
]


@pytest.mark.parametrize("key", KEYS, ids=str)
def test_getitem_matches_numpy(graph, key):
    x = hk.placeholder(hk.float32, [None, None, 4])
    xs = hk.constant(X)
    want = X[key]
    assert xs[key].shape == want.shape
    np.testing.assert_array_equal(hk.Session(graph).run(x[key], {x: X}), want)


def test_getitem_gradient_scatters_back(graph):
    x = hk.placeholder(hk.float32, [2, 3, 4])
    (g,) = hk.gradients(hk.reduce_sum(x[1, ::2, None, -1] * 3.0), [x])
    want = np.zeros_like(X)
    want[1, ::2, -1] = 3
    np.testing.assert_array_equal(hk.Session(graph).run(g, {x: X}), want)


def test_getitem_errors(graph):
    x = hk.placeholder(hk.float32, [2, 3], name="x")
    with pytest.raises(hk.GraphError, match=r"StridedSlice node 'strided_slice': index 3 is out of bounds for axis 1"):
        x[0, 3]
    with pytest.raises(hk.GraphError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(hk.GraphError, match="Unsupported index"):
        x["a"]
    with pytest.raises(hk.GraphError, match="single ellipsis"):
        x[..., ...]
    with pytest.raises(hk.GraphError, match="step cannot be zero"):
        x[::0]
    i = hk.placeholder(hk.int32, [None])
    assert x[i].op.type == "Gather"


def test_reshape_forms_and_errors(graph):
    x = hk.placeholder(hk.float32, [None, 6], name="x")
    n = hk.shape(x)[0]
    assert hk.reshape(x, [-1, 2, 3]).shape == (None, 2, 3)
    y = hk.reshape(x, [n, 3, -1])
    assert y.shape == (None, None, None)
    assert hk.reshape(hk.constant(Y), hk.constant([3, 2])).shape == (3, 2)
    assert hk.Session(graph).run(y, {x: np.zeros((4, 6))}).shape == (4, 3, 2)
    with pytest.raises(hk.GraphError, match=r"Reshape node 'Reshape.*': cannot reshape \[2, 3\] \(6 elements\) to \[4, -1\]"):
        hk.reshape(hk.constant(Y), [4, -1])
    with pytest.raises(hk.GraphError, match="more than one -1"):
        hk.reshape(x, [-1, -1])


def test_shape_size_rank_are_dynamic(graph):
    x = hk.placeholder(hk.float32, [None, 3])
    s, z, r = hk.shape(x), hk.size(x, out_type=hk.int64), hk.rank(x)
    assert s.shape == (2,) and s.dtype is hk.int32 and z.dtype is hk.int64
    got = hk.Session(graph).run([s, z, r], {x: np.zeros((5, 3))})
    np.testing.assert_array_equal(got[0], [5, 3])
    assert got[0].dtype == np.int32 and int(got[1]) == 15 and int(got[2]) == 2


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot(graph, axis):
    idx = np.array([[0, 2], [3, -1]])
    t = hk.one_hot(idx, 3, on_value=5.0, off_value=-1.0, axis=axis)
    base = np.where(idx[..., None] == np.arange(3), 5.0, -1.0).astype(np.float32)
    want = np.moveaxis(base, -1, axis)
    assert t.shape == want.shape and t.dtype is hk.float32
    np.testing.assert_array_equal(hk.Session(graph).run(t), want)
    assert hk.one_hot([1], 2, dtype=hk.int32).dtype is hk.int32


def test_unstack(graph):
    x = hk.placeholder(hk.float32, [2, None])
    parts = hk.unstack(x)
    assert len(parts) == 2 and parts[0].shape == (None,)
    got = hk.Session(graph).run(parts, {x: Y})
    np.testing.assert_array_equal(got[1], Y[1])
    with pytest.raises(hk.GraphError, match="needs num"):
        hk.unstack(x, axis=1)
    assert len(hk.unstack(x, num=3, axis=1)) == 3


def test_shape_rule_errors(graph):
    a = hk.placeholder(hk.float32, [2, 3], name="a")
    with pytest.raises(hk.GraphError, match="Concat node 'Concat': dimension 1 differs"):
        hk.concat([a, hk.placeholder(hk.float32, [2, 4])], axis=0)
    with pytest.raises(hk.GraphError, match="different dtypes"):
        hk.concat([a, hk.placeholder(hk.float64, [2, 3])], axis=0)
    with pytest.raises(hk.GraphError, match="Pack node 'Pack': inputs have different shapes"):
        hk.stack([a, hk.placeholder(hk.float32, [3, 2])])
    with pytest.raises(hk.GraphError, match="cannot squeeze axis 1"):
        hk.squeeze(a, 1)
    with pytest.raises(hk.GraphError, match="not a permutation"):
        hk.transpose(a, [0, 0])
    with pytest.raises(hk.GraphError, match="indices must be integer"):
        hk.gather(a, hk.constant([0.5]))
    with pytest.raises(hk.GraphError, match="multiples"):
        hk.tile(a, [2])
    with pytest.raises(hk.GraphError, match="paddings"):
        hk.pad(a, [[1, 1]])
    with pytest.raises(hk.GraphError, match="begin"):
        hk.slice(a, [0], [1, 1])
    assert hk.concat([a], 0) is a
    assert hk.concat([a, hk.placeholder(hk.float32, [None, 3])], 0).shape == (None, 3)


def test_gather_out_of_range_is_an_op_error(graph):
    p = hk.constant(Y)
    i = hk.placeholder(hk.int32, [None])
    with pytest.raises(hk.OpError, match="Gather node 'Gather'"):
        hk.Session(graph).run(hk.gather(p, i), {i: [5]})
