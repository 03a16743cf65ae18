"""Elementwise ops: forward against NumPy, dtype/shape inference and its errors, operators."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hubkit as hk

_r = np.random.default_rng(7)
A = _r.standard_normal((3, 1)).astype(np.float32)
B = _r.standard_normal((4,)).astype(np.float32)
P = _r.uniform(0.1, 3.0, (2, 3)).astype(np.float32)
M = np.array([[1.0, -2.0, 0.0], [3.5, -0.5, 2.0]], np.float32)
C = np.array([[True, False, True], [False, False, True]])
D = np.array([True, True, False])
N = np.array([[1, -2, 3], [0, 5, -6]], np.int32)

# (function, NumPy reference, inputs)
FORWARD = [
    (hk.add, np.add, [A, B]),
    (hk.subtract, np.subtract, [A, B]),
    (hk.multiply, np.multiply, [A, B]),
    (hk.divide, np.divide, [A, P[0]]),
    (hk.pow, np.power, [P, M]),
    (hk.maximum, np.maximum, [M, P]),
    (hk.minimum, np.minimum, [M, P]),
    (hk.negative, np.negative, [M]),
    (hk.exp, np.exp, [M]),
    (hk.log, np.log, [P]),
    (hk.sqrt, np.sqrt, [P]),
    (hk.rsqrt, lambda x: 1 / np.sqrt(x), [P]),
    (hk.square, np.square, [M]),
    (hk.tanh, np.tanh, [M]),
    (hk.sigmoid, lambda x: 1 / (1 + np.exp(-x.astype(np.float64))), [M]),
    (hk.abs, np.abs, [M]),
    (hk.sign, np.sign, [M]),
    (hk.floor, np.floor, [M]),
    (hk.log1p, np.log1p, [P]),
    (hk.erf, np.vectorize(math.erf), [np.linspace(-4, 4, 81, dtype=np.float32)]),
    (hk.softplus, lambda x: np.log1p(np.exp(x.astype(np.float64))), [M]),
    (hk.identity, lambda x: x, [M]),
    (hk.stop_gradient, lambda x: x, [M]),
    (hk.zeros_like, np.zeros_like, [M]),
    (hk.ones_like, np.ones_like, [N]),
    (lambda x, y: hk.add_n([x, y, x]), lambda x, y: x + y + x, [M, P]),
    (lambda c, x, y: hk.where(c, x, y), np.where, [D, M, P]),
    (hk.equal, np.equal, [M, np.float32(2.0) * np.ones(3, np.float32)]),
    (hk.not_equal, np.not_equal, [M, np.zeros(3, np.float32)]),
    (hk.less, np.less, [M, P]),
    (hk.less_equal, np.less_equal, [N, np.zeros((2, 3), np.int32)]),
    (hk.greater, np.greater, [M, P]),
    (hk.greater_equal, np.greater_equal, [M, np.zeros((1, 3), np.float32)]),
    (hk.logical_and, np.logical_and, [C, D]),
    (hk.logical_or, np.logical_or, [C, D]),
    (hk.logical_not, np.logical_not, [C]),
    (lambda x: hk.cast(x, hk.int32), lambda x: x.astype(np.int32), [M]),
    (lambda x: hk.cast(x, hk.float32), lambda x: x.astype(np.float32), [N]),
    (lambda x: hk.cast(x, hk.bool), lambda x: x.astype(bool), [N]),
    (lambda x: hk.clip_by_value(x, -1.0, 1.5), lambda x: np.clip(x, -1.0, 1.5), [M]),
    (hk.matmul, np.matmul, [M, P.T]),
    (lambda a, b: hk.matmul(a, b, transpose_a=True), lambda a, b: a.T @ b, [M, P]),
    (lambda a, b: hk.matmul(a, b, transpose_b=True), lambda a, b: a @ b.T, [M, P]),
    (hk.matmul, np.matmul, [np.stack([M, P]), P.T]),
    (lambda a, b: hk.matmul(a, b, True, True), lambda a, b: np.swapaxes(a, -1, -2) @ np.swapaxes(b, -1, -2),
     [np.stack([M.T, P.T])[None], np.stack([M, P, M])[:, None]]),
]


@pytest.mark.parametrize(("fn", "ref", "inputs"), FORWARD, ids=[f"{i}" for i in range(len(FORWARD))])
def test_forward_matches_numpy(graph, fn, ref, inputs):
    phs = [hk.placeholder(hk.as_dtype(x.dtype), [None] * x.ndim) for x in inputs]
    known = fn(*[hk.constant(x) for x in inputs])
    out = fn(*phs)
    got, got_known = hk.Session(graph).run([out, known], dict(zip(phs, inputs)))
    want = ref(*inputs)
    assert np.asarray(got).dtype == np.asarray(want).dtype or (
        np.asarray(want).dtype == np.float64 and np.asarray(got).dtype == np.float32
    )
    assert np.asarray(got).dtype == out.dtype.np_dtype, "kernel dtype must match the inferred dtype"
    assert known.shape == np.shape(want), "static shape of fully known inputs is exact"
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=3e-7)
    np.testing.assert_allclose(got_known, want, rtol=2e-6, atol=3e-7)


def test_float32_stays_float32(graph):
    x = hk.placeholder(hk.float32, [None, 3])
    outs = [x * 2, 2.5 - x, x / 3, hk.sigmoid(x), hk.erf(x), hk.softplus(x), x**2, hk.exp(x)]
    for t in outs:
        assert t.dtype is hk.float32
    for v in hk.Session(graph).run(outs, {x: np.ones((2, 3), np.float32)}):
        assert v.dtype == np.float32


def test_erf_float64_is_exact_and_float32_close():
    xs = np.linspace(-6, 6, 241)
    want = np.array([math.erf(v) for v in xs])
    g = hk.Graph()
    with g.as_default():
        a = hk.placeholder(hk.float64, [None])
        b = hk.placeholder(hk.float32, [None])
        ea, eb = hk.erf(a), hk.erf(b)
    got64, got32 = hk.Session(g).run([ea, eb], {a: xs, b: xs.astype(np.float32)})
    np.testing.assert_allclose(got64, want, rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(got32, want, rtol=1e-6, atol=2e-7)
    tiny = hk.Session(g).run(eb, {b: np.array([1e-30, -1e-8], np.float32)})
    np.testing.assert_allclose(tiny, [2 / math.sqrt(math.pi) * 1e-30, -2 / math.sqrt(math.pi) * 1e-8], rtol=1e-6)


def test_sigmoid_and_softplus_do_not_overflow(graph):
    x = hk.placeholder(hk.float32, [None])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s, sp = hk.Session(graph).run([hk.sigmoid(x), hk.softplus(x)], {x: np.array([-1000, 0, 1000], np.float32)})
    np.testing.assert_allclose(s, [0, 0.5, 1])
    np.testing.assert_allclose(sp, [0, math.log(2), 1000], rtol=1e-6)


def test_python_scalars_take_the_tensor_dtype(graph):
    x = hk.placeholder(hk.float32, [2])
    i = hk.placeholder(hk.int64, [2])
    assert (x * 2).dtype is hk.float32
    assert (2 * x).dtype is hk.float32
    assert (i + 1).dtype is hk.int64
    assert (x < 0).dtype is hk.bool
    assert hk.maximum(x, [0.0, 1.0]).dtype is hk.float32
    with pytest.raises(hk.GraphError, match="fraction"):
        i * 2.5


def test_dtype_mismatch_names_op_node_and_both_dtypes(graph):
    a = hk.placeholder(hk.float32, [None, 3], name="a")
    b = hk.placeholder(hk.int64, [3], name="b")
    with pytest.raises(hk.GraphError) as e:
        hk.add(a, b)
    msg = str(e.value)
    for part in ("Add node 'Add'", "'a:0'", "'b:0'", "float32", "int64", "[None, 3]", "[3]"):
        assert part in msg
    assert not graph.has_node("Add"), "a failed op adds no node"


def test_broadcast_mismatch_names_both_shapes(graph):
    a = hk.placeholder(hk.float32, [None, 3], name="a")
    b = hk.placeholder(hk.float32, [4], name="b")
    with pytest.raises(hk.GraphError, match=r"Mul node 'prod': shapes cannot be broadcast.*\[None, 3\].*\[4\]"):
        hk.multiply(a, b, name="prod")


def test_matmul_inner_dimension_error(graph):
    a = hk.placeholder(hk.float32, [None, 4])
    b = hk.constant(np.ones((3, 2), np.float32))
    with pytest.raises(hk.GraphError, match=r"^MatMul node 'MatMul': cannot multiply \[None, 4\] by \[3, 2\]"):
        hk.matmul(a, b)
    with pytest.raises(hk.GraphError, match="rank 2 or more"):
        hk.matmul(hk.placeholder(hk.float32, [4]), b)
    with pytest.raises(hk.GraphError, match="different dtypes"):
        hk.matmul(a, hk.constant(np.ones((4, 2)), dtype=hk.float64))


def test_matmul_static_shapes(graph):
    a = hk.placeholder(hk.float32, [5, None, 2, 3])
    b = hk.placeholder(hk.float32, [1, 3, 4])
    c = hk.placeholder(hk.float32, [4, 2])
    assert hk.matmul(a, b).shape == (5, None, 2, 4)
    assert hk.matmul(a, c, transpose_a=True, transpose_b=True).shape == (5, None, 3, 4)
    assert hk.matmul(hk.placeholder(hk.float32), b).shape is None


def test_kind_errors(graph):
    f = hk.placeholder(hk.float32, [2])
    i = hk.placeholder(hk.int32, [2])
    s = hk.placeholder(hk.string, [2])
    with pytest.raises(hk.GraphError, match="Exp node 'Exp': the input must be floating-point"):
        hk.exp(i)
    with pytest.raises(hk.GraphError, match="must be bool"):
        hk.logical_and(f > 0, i)
    with pytest.raises(hk.GraphError, match="floating-point"):
        hk.divide(i, i)
    with pytest.raises(hk.GraphError, match="Select node"):
        hk.where(f, f, f)
    with pytest.raises(hk.GraphError, match="cannot cast"):
        hk.cast(s, hk.float32)
    assert hk.equal(s, "a").dtype is hk.bool


def test_operators(graph):
    x = hk.placeholder(hk.float32, [2, 2])
    xv = np.array([[1.0, -2.0], [3.0, 4.0]], np.float32)
    exprs = {
        "add": (x + 1, xv + 1), "radd": (1 + x, 1 + xv), "sub": (x - 1, xv - 1), "rsub": (1 - x, 1 - xv),
        "mul": (x * 3, xv * 3), "rmul": (3 * x, 3 * xv), "div": (x / 2, xv / 2), "rdiv": (2 / x, 2 / xv),
        "matmul": (x @ x, xv @ xv), "rmatmul": (xv @ x, xv @ xv), "pow": (x**2, xv**2),
        "neg": (-x, -xv), "abs": (abs(x), abs(xv)), "lt": (x < 2, xv < 2), "gt": (x > 2, xv > 2),
        "getitem": (x[1, ::-1], xv[1, ::-1]),
    }
    got = hk.Session(graph).run({k: v[0] for k, v in exprs.items()}, {x: xv})
    for k, (_, want) in exprs.items():
        np.testing.assert_allclose(got[k], want, err_msg=k)


def test_add_n_checks_and_single_input(graph):
    x = hk.placeholder(hk.float32, [2])
    assert hk.add_n([x]) is x
    with pytest.raises(hk.GraphError, match="AddN node 'AddN': inputs have different shapes"):
        hk.add_n([x, hk.placeholder(hk.float32, [3])])
    assert hk.add_n([x, hk.placeholder(hk.float32, None)]).shape == (2,)


def test_cast_to_same_dtype_is_the_tensor(graph):
    x = hk.placeholder(hk.float32, [2])
    assert hk.cast(x, "float32") is x
    assert hk.cast(x, hk.float64).dtype is hk.float64


def test_clip_by_value_is_scoped(graph):
    x = hk.placeholder(hk.float32, [2])
    y = hk.clip_by_value(x, 0.0, 1.0)
    assert y.name.startswith("clip_by_value/")
