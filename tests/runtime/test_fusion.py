"""Fusion of elementwise chains: parity with the unfused NumPy steps, fallbacks and plan bookkeeping."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops import _numba
from hubkit.runtime import fusion
from hubkit.runtime.executor import compile_plan
from hubkit.runtime.fusion import FusedChain

needs_numba = pytest.mark.skipif(not _numba.numba_enabled(), reason="Numba is off or not installed")


@pytest.fixture
def fuse_everything(monkeypatch):
    """Fuse every eligible chain at every size, so the kernel runs on small test arrays."""
    monkeypatch.setattr(fusion, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(fusion, "_worth_fusing", lambda opcodes, dtype: True)


def _fused_steps(plan) -> list[FusedChain]:
    return [s[0] for s in plan.steps if isinstance(s[0], FusedChain)]


def _check_bookkeeping(plan) -> None:
    """Every step reads only live slots; every fetched slot is live at the end."""
    live = set(plan.feed_slots)
    for _fn, _kwargs, ins, outs, frees, node in plan.steps:
        missing = [s for s in ins if s not in live]
        assert not missing, f"{node.name} reads slots never written or already freed: {missing}"
        live.update(outs)
        live.difference_update(frees)
    assert all(s in live for s in plan.fetch_slots if s >= 0)


CHAINS = {
    "bias_relu": lambda x, b: hk.nn.relu(hk.nn.bias_add(x, b)),
    "relu6_of_sum": lambda x, b: hk.nn.relu6(x * 3.0 + b),
    "swish": lambda x, b: x * hk.sigmoid(x),
    "gelu_tanh": lambda x, b: hk.nn.gelu(x, approximate=True),
    "gelu_erf": lambda x, b: hk.nn.gelu(x),
    "softplus_tanh": lambda x, b: hk.tanh(hk.softplus(x) - b),
    "poly": lambda x, b: (x * 2.0 + 1.0) * x - 3.0,
    "clip": lambda x, b: hk.clip_by_value(x * b, -1.0, 1.0),
    "sqrt_rsqrt": lambda x, b: hk.sqrt(hk.abs(x) + 1.0) * hk.rsqrt(hk.square(b) + 0.5),
    "exp_log": lambda x, b: hk.log(hk.exp(-hk.abs(x)) + 1e-3) / (b * b + 1.0),
    "pow": lambda x, b: hk.pow(hk.abs(x) + 0.5, 1.7) + hk.pow(x, 2.0) - hk.pow(b, 3.0),
    "max_min_neg": lambda x, b: hk.minimum(hk.maximum(-x, b), 0.5) - hk.log1p(hk.square(x)),
}


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_fused_chain_matches_numpy_steps(fuse_everything, graph, name, dtype):
    x = hk.placeholder(dtype, [None, 37], name="x")
    b = hk.placeholder(dtype, [37], name="b")
    y = CHAINS[name](x, b)
    plan = compile_plan(graph, [y], [x, b])
    assert _fused_steps(plan), "the chain was not fused"
    assert plan.unfused is not None and len(plan.steps) < len(plan.unfused.steps)
    _check_bookkeeping(plan)
    rng = np.random.default_rng(1)
    feeds = [rng.standard_normal((50, 37)).astype(dtype), rng.standard_normal(37).astype(dtype)]
    got = plan.run(feeds)[0]
    want = plan.unfused.run(feeds)[0]
    assert got.dtype == want.dtype == np.dtype(dtype) and got.shape == want.shape
    tol = 2e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol * 4, atol=tol)


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_inf_propagate_as_in_numpy(fuse_everything, graph, dtype):
    x = hk.placeholder(dtype, [None], name="x")
    y = hk.placeholder(dtype, [None], name="y")
    outs = [hk.nn.relu(x + y), hk.maximum(x, y) * 2.0, hk.minimum(x, y) - 1.0, x / y + 1.0,
            hk.nn.relu6(x) * hk.sqrt(y), hk.softplus(x) + y]
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.0, np.nan, 3.0], dtype)
    other = np.array([1.0, -np.inf, np.nan, 0.0, 0.0, np.nan, np.inf, np.nan, -0.0], dtype)
    plan = compile_plan(graph, outs, [x, y])
    assert len(_fused_steps(plan)) == len(outs)
    with np.errstate(all="ignore"):
        got = plan.run([special, other])
        want = plan.unfused.run([special, other])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@needs_numba
def test_scalar_operands_fed_at_run_time_broadcast(fuse_everything, graph):
    x = hk.placeholder(hk.float32, [None, None], name="x")
    s = hk.placeholder(hk.float32, None, name="s")
    y = hk.tanh(x * s + 1.0) - s
    plan = compile_plan(graph, [y], [x, s])
    assert _fused_steps(plan)
    xv = np.random.default_rng(2).standard_normal((20, 30)).astype(np.float32)
    for sv in (np.float32(0.5), np.full((1, 1), 2.0, np.float32), np.full((1,), -1.0, np.float32)):
        np.testing.assert_allclose(plan.run([xv, sv])[0], np.tanh(xv * sv + 1) - sv, rtol=1e-5, atol=1e-6)


@needs_numba
def test_operands_broadcasting_along_a_middle_axis_fall_back(fuse_everything, graph, monkeypatch):
    x = hk.placeholder(hk.float64, [None, None], name="x")
    y = hk.placeholder(hk.float64, [None, None], name="y")
    z = hk.nn.relu(x - y) * 2.0
    plan = compile_plan(graph, [z], [x, y])
    assert _fused_steps(plan)
    calls = []
    kernel = fusion.compiled_kernel()
    monkeypatch.setattr(fusion, "compiled_kernel", lambda: calls.append(1) or kernel)
    rng = np.random.default_rng(3)
    xv, col = rng.standard_normal((6, 5)), rng.standard_normal((6, 1))
    np.testing.assert_allclose(plan.run([xv, col])[0], np.maximum(xv - col, 0) * 2)  # [6, 1] vs [6, 5]
    np.testing.assert_allclose(plan.run([col, xv])[0], np.maximum(col - xv, 0) * 2)
    row = rng.standard_normal((1, 5))
    np.testing.assert_allclose(plan.run([xv, row])[0], np.maximum(xv - row, 0) * 2)  # a suffix: fused
    np.testing.assert_allclose(plan.run([xv.T, xv.T])[0], np.zeros((5, 6)))  # not C-contiguous
    assert len(calls) == 4  # each call looked for the kernel; only the suffix one could use it


@needs_numba
def test_small_outputs_run_the_numpy_steps(graph):
    x = hk.placeholder(hk.float32, [None, 64], name="x")
    b = hk.placeholder(hk.float32, [64], name="b")
    y = hk.nn.relu(hk.nn.bias_add(x, b))
    plan = compile_plan(graph, [y], [x, b])
    assert len(_fused_steps(plan)) == 1
    xv, bv = np.ones((2, 64), np.float32), np.full(64, -2.0, np.float32)
    assert xv.size < fusion.MIN_ELEMENTS
    np.testing.assert_array_equal(plan.run([xv, bv])[0], np.zeros((2, 64), np.float32))
    big = np.ones((fusion.MIN_ELEMENTS // 64 + 1, 64), np.float32)
    np.testing.assert_array_equal(plan.run([big, -bv])[0], np.full(big.shape, 3.0, np.float32))


@needs_numba
def test_static_shapes_below_the_threshold_are_not_fused(graph):
    x = hk.placeholder(hk.float32, [4, 8], name="x")
    plan = compile_plan(graph, [hk.nn.relu(x + 1.0) * 3.0], [x])
    assert plan.unfused is None and not _fused_steps(plan)


@needs_numba
def test_fetched_or_shared_intermediates_are_not_fused_away(fuse_everything, graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    t = hk.square(x) + 1.0
    shared = hk.exp(x)
    y = hk.tanh(t) * shared
    w = shared - 1.0
    plan = compile_plan(graph, [y, t, w], [x])
    _check_bookkeeping(plan)
    computed = {s.node.name for s in plan.steps}
    assert t.node.name in computed and shared.node.name in computed  # fetched / read twice
    xv = np.linspace(-2, 2, 11, dtype=np.float32)
    got = plan.run([xv])
    want = plan.unfused.run([xv])
    for g, v in zip(got, want):
        np.testing.assert_allclose(g, v, rtol=1e-6, atol=1e-7)


@needs_numba
def test_constants_folded_into_kernels_leave_the_plan(fuse_everything, graph):
    x = hk.placeholder(hk.float64, [None], name="x")
    y = (x * 2.0 + 1.0) * x - 3.0
    plan = compile_plan(graph, [y], [x])
    assert [s.node.op for s in plan.steps] == ["Sub"]  # one kernel; no Const steps left
    assert len(plan.unfused.leaf_names) == 3  # the unfused plan preloads the three constants
    xv = np.arange(5.0)
    np.testing.assert_allclose(plan.run([xv])[0], (xv * 2 + 1) * xv - 3)


@needs_numba
def test_session_reports_every_intermediate(fuse_everything, graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    inner = hk.multiply(x, 0.5, name="inner")
    y = hk.nn.relu(hk.add(inner, 1.0, name="shifted"), name="out")
    sess = hk.Session(graph)
    value, inter = sess.run_with_intermediates(y, {x: [-4.0, 2.0]})
    np.testing.assert_allclose(value, [0.0, 2.0])
    np.testing.assert_allclose(inter["inner:0"], [-2.0, 1.0])
    np.testing.assert_allclose(inter["shifted:0"], [-1.0, 2.0])
    np.testing.assert_allclose(sess.run(y, {x: [-4.0, 2.0]}), [0.0, 2.0])


@needs_numba
def test_gradients_of_a_fused_graph_match_finite_differences(fuse_everything, graph):
    x = hk.placeholder(hk.float64, [None], name="x")
    y = hk.reduce_sum(hk.nn.gelu(x, approximate=True) * hk.sigmoid(x))
    (gx,) = hk.gradients(y, [x])
    xv = np.linspace(-3, 3, 13)
    sess = hk.Session(graph)
    got = sess.run(gx, {x: xv})
    eps = 1e-6
    numeric = np.array([(sess.run(y, {x: xv + eps * e}) - sess.run(y, {x: xv - eps * e})) / (2 * eps)
                        for e in np.eye(len(xv))])
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)


@needs_numba
def test_switching_numba_off_after_compiling_runs_numpy(fuse_everything, graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    y = hk.nn.relu(x - 1.0) * 2.0
    plan = compile_plan(graph, [y], [x])
    assert _fused_steps(plan)
    try:
        _numba.set_numba_enabled(False)
        assert fusion.compiled_kernel() is None
        np.testing.assert_allclose(plan.run([np.array([0.0, 3.0], np.float32)])[0], [0.0, 4.0])
        assert compile_plan(graph, [y], [x]).unfused is None
    finally:
        _numba.set_numba_enabled(None)


def test_numba_off_leaves_plans_unchanged(graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    y = hk.nn.gelu(x, approximate=True)
    try:
        _numba.set_numba_enabled(False)
        plan = compile_plan(graph, [y], [x])
    finally:
        _numba.set_numba_enabled(None)
    assert plan.unfused is None and not _fused_steps(plan)
    xv = np.linspace(-3, 3, 7, dtype=np.float32)
    c = math.sqrt(2 / math.pi)
    want = 0.5 * xv * (1 + np.tanh(c * (xv + 0.044715 * xv**3)))
    np.testing.assert_allclose(plan.run([xv])[0], want, rtol=1e-5, atol=1e-6)


def test_cost_model_keeps_slow_kernel_ops_in_numpy():
    from hubkit.ops.registry import get_op

    def cost(op):  # the cost each op class declares with its fused form
        return get_op(op).fused.cost

    cube = get_op("Pow").fused_powers[3.0].cost
    f32 = np.dtype(np.float32)
    assert not fusion._worth_fusing([cost("Sigmoid"), cost("Mul")], f32)  # swish: NumPy's SIMD tanh wins
    assert fusion._worth_fusing([cost("Add"), cost("Relu")], f32)
    assert fusion._worth_fusing([cube, cost("Mul"), cost("Add"), cost("Tanh"), cost("Mul")], f32)
    assert not fusion._worth_fusing([cost("Relu")], f32)  # a lone cheap op saves no memory pass
