"""Reductions against NumPy, their shape rules and errors, and the unbroadcast helper."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops._helpers import unbroadcast

X = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
XI = np.arange(24, dtype=np.int32).reshape(2, 3, 4) % 7

CASES = [
    (hk.reduce_sum, np.sum), (hk.reduce_mean, np.mean), (hk.reduce_max, np.max),
    (hk.reduce_min, np.min), (hk.reduce_prod, np.prod),
]
AXES = [None, 0, -1, [0, 2], (1,), []]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize(("fn", "ref"), CASES, ids=[c[1].__name__ for c in CASES])
def test_reduce_matches_numpy(graph, fn, ref, axis, keepdims):
    x = hk.placeholder(hk.float32, [None, 3, 4])
    xs = hk.constant(X)
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    want = ref(X, axis=np_axis, keepdims=keepdims)
    y, ys = fn(x, axis=axis, keepdims=keepdims), fn(xs, axis=axis, keepdims=keepdims)
    assert ys.shape == np.shape(want)
    got = hk.Session(graph).run(y, {x: X})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_int_reductions_keep_dtype(graph):
    x = hk.constant(XI)
    got = hk.Session(graph).run([hk.reduce_sum(x, 1), hk.reduce_max(x), hk.reduce_mean(x, 0)])
    np.testing.assert_array_equal(got[0], XI.sum(1))
    assert got[0].dtype == np.int32
    assert int(got[1]) == XI.max()
    np.testing.assert_array_equal(got[2], (XI.sum(0) / 2).astype(np.int32))


def test_unknown_rank(graph):
    x = hk.placeholder(hk.float32)
    assert hk.reduce_sum(x).shape == ()
    assert hk.reduce_sum(x, axis=-1).shape is None
    got = hk.Session(graph).run(hk.reduce_sum(x, axis=-1), {x: X})
    np.testing.assert_allclose(got, X.sum(-1), rtol=1e-6)


@pytest.mark.parametrize(("fn", "ref"), [(hk.argmax, np.argmax), (hk.argmin, np.argmin)])
def test_arg_reductions(graph, fn, ref):
    x = hk.placeholder(hk.float32, [None, 3, 4])
    outs = [fn(x), fn(x, axis=0), fn(x, axis=1, output_type=hk.int32)]
    assert outs[0].shape == (None, 3) and outs[0].dtype is hk.int64
    assert outs[2].dtype is hk.int32
    got = hk.Session(graph).run(outs, {x: X})
    for g, a in zip(got, (-1, 0, 1)):
        np.testing.assert_array_equal(g, ref(X, axis=a))
    assert got[2].dtype == np.int32
    with pytest.raises(hk.GraphError, match="single int"):
        fn(x, axis=[0, 1])
    with pytest.raises(hk.GraphError, match="output_type"):
        fn(x, output_type=hk.float32)


def test_axis_errors_name_the_node(graph):
    x = hk.placeholder(hk.float32, [2, 3], name="x")
    with pytest.raises(hk.GraphError, match=r"Sum node 'total': axis 2 is out of range for a tensor of rank 2"):
        hk.reduce_sum(x, axis=2, name="total")
    with pytest.raises(hk.GraphError, match="repeats an axis"):
        hk.reduce_mean(x, axis=[1, -1])
    with pytest.raises(hk.GraphError, match="ints"):
        hk.reduce_max(x, axis="0")
    with pytest.raises(hk.GraphError, match="floating-point or integer"):
        hk.reduce_sum(x > 0)


def test_max_gradient_shares_ties(graph):
    x = hk.placeholder(hk.float32, [4])
    (g,) = hk.gradients(hk.reduce_max(x), [x])
    np.testing.assert_allclose(hk.Session(graph).run(g, {x: [1, 3, 3, 2]}), [0, 0.5, 0.5, 0])


def test_unbroadcast_returns_g_when_shapes_prove_no_broadcast(graph):
    g = hk.placeholder(hk.float32, [2, 3])
    assert unbroadcast(g, hk.placeholder(hk.float32, [2, 3])) is g
    batch = hk.placeholder(hk.float32, [None, 3])
    bias = hk.placeholder(hk.float32, [3])
    gb = hk.placeholder(hk.float32, [None, 3])
    assert unbroadcast(gb, batch, bias) is gb, "a [3] bias never enlarges a [None, 3] operand"
    reduced = unbroadcast(gb, bias, batch)
    assert reduced.op.type == "SumToShape"
    assert unbroadcast(gb, batch).op.type == "SumToShape", "without the other operand it cannot know"
    other = hk.placeholder(hk.float32, [None, None])
    assert unbroadcast(gb, batch, other).op.type == "SumToShape"
    one = hk.placeholder(hk.float32, [1, 1])
    got = hk.Session(graph).run([reduced, unbroadcast(gb, one)], {gb: np.ones((5, 3)), bias: np.zeros(3), one: [[0]]})
    np.testing.assert_allclose(got[0], [5, 5, 5])
    np.testing.assert_allclose(got[1], [[15]])



@pytest.mark.parametrize("fn", [hk.reduce_sum, hk.argmax, hk.transpose, hk.nn.softmax])
def test_a_tensor_of_another_graph_builds_in_its_own_graph(fn):
    g = hk.Graph()  # never made the default graph: the op must follow its input
    with g.as_default():
        x = hk.placeholder(hk.float32, [2, 3])
    y = fn(x)
    assert y.graph is g
    assert hk.Session(g).run(y, {x: X[0, :2, :3]}).shape == y.shape


def test_numpy_integer_axes_are_accepted_and_stored_as_plain_ints(graph):
    x = hk.placeholder(hk.float32, [2, 3])
    total = hk.reduce_sum(x, axis=np.int64(1))
    both = hk.reduce_mean(x, axis=[np.int32(0), np.int64(1)])
    arg = hk.argmax(x, axis=np.int64(0))
    mean, _ = hk.nn.moments(x, axes=np.int64(0))
    assert type(total.node.attrs["axis"]) is int and all(type(a) is int for a in both.node.attrs["axis"])
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = hk.Session(graph).run([total, both, arg, mean], {x: xv})
    np.testing.assert_allclose(out[0], xv.sum(1))
    np.testing.assert_allclose(out[1], xv.mean())
    np.testing.assert_array_equal(out[2], xv.argmax(0))
    np.testing.assert_allclose(out[3], xv.mean(0))


def test_a_non_integer_axis_is_refused_naming_the_node(graph):
    x = hk.placeholder(hk.float32, [2, 3])
    with pytest.raises(hk.GraphError, match=r"Sum node .*axis must be an int or a list of ints"):
        hk.reduce_sum(x, axis="1")
    with pytest.raises(hk.GraphError, match="axis must be an int or a list of ints"):
        hk.nn.moments(x, axes=["a"])
