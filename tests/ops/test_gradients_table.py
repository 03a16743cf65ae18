"""Every differentiable op of the core families, checked against finite differences in float64."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops.registry import apply, get_op, registered_ops
from tests.helpers_fd import COVERED, check_vjp, cover

TESTS = Path(__file__).resolve().parents[1]

_r = np.random.default_rng(42)


def _n(*shape):
    return _r.standard_normal(shape)


def _pos(*shape):
    return _r.uniform(0.5, 2.0, shape)


def _distinct(*shape):
    """Values far from each other and from 0, so max/min/abs have no ties or kinks near them."""
    n = int(np.prod(shape))
    v = (_r.permutation(n) + 1.0) * 0.37 * _r.choice([-1, 1], n)
    return v.reshape(shape)


# (op types checked, function of the placeholders, input values[, check_vjp options])
CASES = [
    (["Add"], lambda a, b: a + b, [_n(3, 1), _n(4)]),
    (["Sub"], lambda a, b: a - b, [_n(2, 3), _n(1, 3)]),
    (["Mul"], lambda a, b: a * b, [_n(2, 1, 3), _n(4, 1)]),
    (["RealDiv"], lambda a, b: a / b, [_n(2, 3), _pos(3)]),
    (["Pow"], lambda a, b: a**b, [_pos(2, 3), _n(3)]),
    (["Maximum"], hk.maximum, [_distinct(2, 3), _distinct(3) + 0.1]),
    (["Minimum"], hk.minimum, [_distinct(2, 3), _distinct(2, 1) + 0.1]),
    (["AddN"], lambda a, b, c: hk.add_n([a, b, c]), [_n(2, 2), _n(2, 2), _n(2, 2)]),
    (["Neg"], lambda a: -a, [_n(3)]),
    (["Abs"], hk.abs, [_distinct(2, 3)]),
    (["Square"], hk.square, [_n(2, 3)]),
    (["Sqrt"], hk.sqrt, [_pos(3)]),
    (["Rsqrt"], hk.rsqrt, [_pos(3)]),
    (["Exp"], hk.exp, [_n(3)]),
    (["Log"], hk.log, [_pos(3)]),
    (["Log1p"], hk.log1p, [_pos(3)]),
    (["Tanh"], hk.tanh, [_n(3)]),
    (["Sigmoid"], hk.sigmoid, [_n(3)]),
    (["Softplus"], hk.softplus, [_n(3)]),
    (["Erf"], hk.erf, [_n(5)]),
    (["Identity"], hk.identity, [_n(3)]),
    (["Cast"], lambda a: hk.cast(hk.cast(a, hk.float32), hk.float64), [_n(3)], {"eps": 1e-2, "rtol": 1e-4}),
    (["Select"], lambda c, a, b: hk.where(c, a, b), [np.array([True, False, True]), _n(2, 3), _n(3)]),
    (["MatMul"], hk.matmul, [_n(2, 3), _n(3, 4)]),
    (["MatMul"], lambda a, b: hk.matmul(a, b, transpose_a=True), [_n(3, 2), _n(3, 4)]),
    (["MatMul"], lambda a, b: hk.matmul(a, b, transpose_b=True), [_n(2, 3), _n(4, 3)]),
    (["MatMul"], lambda a, b: hk.matmul(a, b, True, True), [_n(3, 2), _n(4, 3)]),
    (["MatMul"], hk.matmul, [_n(2, 2, 3), _n(3, 4)]),
    (["MatMul"], lambda a, b: hk.matmul(a, b, transpose_b=True), [_n(2, 1, 2, 3), _n(3, 4, 3)]),
    (["Sum"], lambda a: hk.reduce_sum(a, axis=1), [_n(2, 3, 2)]),
    (["Sum"], lambda a: hk.reduce_sum(a, axis=[0, -1], keepdims=True), [_n(2, 3, 2)]),
    (["Sum"], hk.reduce_sum, [_n(2, 3)]),
    (["Mean"], lambda a: hk.reduce_mean(a, axis=0), [_n(4, 3)]),
    (["Mean", "Size"], lambda a: hk.reduce_mean(hk.reshape(a, hk.shape(a)), axis=-1), [_n(4, 3)]),
    (["Max"], lambda a: hk.reduce_max(a, axis=1), [_distinct(3, 4)]),
    (["Max"], lambda a: hk.reduce_max(a, keepdims=True), [_distinct(3, 4)]),
    (["Min"], lambda a: hk.reduce_min(a, axis=0), [_distinct(3, 4)]),
    (["Prod"], lambda a: hk.reduce_prod(a, axis=1), [_pos(2, 3)]),
    (["SumToShape"], lambda g, like: apply("SumToShape", g, like), [_n(2, 3, 4), _n(3, 1)]),
    (["BroadcastLike"], lambda x, like: apply("BroadcastLike", x, like), [_n(3, 1), _n(2, 3, 4)]),
    (["BroadcastLike"], lambda x, like: apply("BroadcastLike", x, like, axis=[1]), [_n(2, 4), _n(2, 3, 4)]),
    (["Reshape"], lambda a: hk.reshape(a, [3, -1]), [_n(2, 3)]),
    (["Reshape", "Shape"], lambda a, b: hk.reshape(a, hk.shape(b)), [_n(2, 3), _n(3, 2)]),
    (["Transpose"], lambda a: hk.transpose(a, [2, 0, 1]), [_n(2, 3, 4)]),
    (["Transpose"], hk.transpose, [_n(2, 3)]),
    (["Squeeze"], lambda a: hk.squeeze(a, 1), [_n(2, 1, 3)]),
    (["ExpandDims"], lambda a: hk.expand_dims(a, -1), [_n(2, 3)]),
    (["Concat", "SplitLike"], lambda a, b: hk.concat([a, b], axis=1), [_n(2, 3), _n(2, 1)]),
    (["SplitLike", "Concat"], lambda g, a, b: apply("SplitLike", g, a, b, axis=0), [_n(5, 2), _n(2, 2), _n(3, 2)]),
    (["Pack", "Unpack"], lambda a, b: hk.stack([a, b], axis=1), [_n(2, 3), _n(2, 3)]),
    (["Unpack", "Pack"], lambda a: hk.unstack(a, axis=1), [_n(2, 3)]),
    (["StridedSlice", "StridedSliceGrad"], lambda a: a[1:, ::-2, None, 0], [_n(3, 5, 2)]),
    (["StridedSlice"], lambda a: a[..., 1], [_n(2, 3)]),
    (["StridedSlice"], lambda a: hk.slice(a, [1, 0], [2, -1]), [_n(3, 4)]),
    (["StridedSliceGrad", "StridedSlice"],
     lambda g, like: apply("StridedSliceGrad", g, like, spec=[["slice", 1, None, 2]]), [_n(2, 3), _n(4, 3)]),
    (["Gather", "ScatterToDense"], lambda p, i: hk.gather(p, i), [_n(5, 2), np.array([[0, 3], [3, 4]])]),
    (["Gather", "GatherGrad"], lambda p, i: hk.gather(p, i, axis=1), [_n(2, 4), np.array([3, 0, 3])]),
    (["GatherGrad", "Gather"], lambda g, i, like: apply("GatherGrad", g, i, like, axis=1),
     [_n(2, 3), np.array([1, 1, 0]), _n(2, 4)]),
    (["ScatterToDense", "Gather"], lambda v, i, like: hk.scatter_to_dense(v, i, like),
     [_n(3, 2), np.array([2, 0, 2]), _n(4, 2)]),
    (["UnsortedSegmentSum", "Gather"], lambda d, s: hk.unsorted_segment_sum(d, s, 3), [_n(4, 2), np.array([0, 2, 0, 1])]),
    (["UnsortedSegmentSum"], lambda d, s: hk.segment_sum(d, s), [_n(4, 2), np.array([0, 0, 1, 1])]),
    (["Fill"], lambda v: hk.fill([2, 3], v), [np.array(0.7)]),
    (["Tile", "TileGrad"], lambda a: hk.tile(a, [2, 3]), [_n(2, 1)]),
    (["TileGrad", "Tile"], lambda g, like: apply("TileGrad", g, like, multiples=[2, 1]), [_n(4, 3), _n(2, 3)]),
    (["Pad"], lambda a: hk.pad(a, [[1, 0], [2, 1]]), [_n(2, 3)]),
]

for _op in sorted({op for case in CASES for op in case[0]}):
    cover(get_op(_op).module, [_op])  # the table mixes the core families


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0][0]}-{i}" for i, c in enumerate(CASES)])
def test_gradient_matches_finite_differences(case):
    ops, fn, inputs, *options = case
    check_vjp(fn, inputs, ops=ops, **{"rtol": 1e-5, "atol": 1e-7, **(options[0] if options else {})})


def test_second_order_through_vjp_ops():
    # d/dx sum(d/dx sum(x**3)) = sum(6x): the gradient graph is itself differentiable.
    x0 = _n(4)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float64, [4])
        (dx,) = hk.gradients(hk.reduce_sum(x * x * x), [x])
        (ddx,) = hk.gradients(hk.reduce_sum(dx), [x])
    np.testing.assert_allclose(hk.Session(g).run(ddx, {x: x0}), 6 * x0)


def _modules_calling_cover() -> list[str]:
    """Dotted names of the test modules that call ``cover(...)``, found by parsing every test file."""
    names = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        calls = (n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name))
        if any(call.func.id == "cover" for call in calls):
            names.append(".".join(path.relative_to(TESTS.parent).with_suffix("").parts))
    return names


def test_every_registered_differentiable_op_is_covered_by_a_table():
    """Every differentiable op of every hubkit family has a finite-difference check somewhere.

    The test modules that declare coverage are imported here, so the check holds when this test
    runs alone, and a new op family without a gradient check fails it.
    """
    tables = _modules_calling_cover()
    assert "tests.ops.test_nn_gradients" in tables and "tests.ops.test_embedding_lookup_sparse" in tables
    for name in tables:
        importlib.import_module(name)
    ops = {name: get_op(name) for name in registered_ops() if get_op(name).module.startswith("hubkit.")}
    families = {op.module for op in ops.values() if op.differentiable}
    assert {"hubkit.ops.elementwise", "hubkit.ops.nn", "hubkit.ops.sparse"} <= families, sorted(families)
    uncovered = sorted(f"{name} ({op.module})" for name, op in ops.items() if op.differentiable and name not in COVERED)
    assert not uncovered, (
        f"differentiable ops without a gradient check: {uncovered}; check them against finite differences "
        "and declare it with tests.helpers_fd.cover(family, [op types]) beside the check"
    )
    wrong = sorted(
        f"{name} (declared in {family}, registered by {ops[name].module if name in ops else 'nothing'})"
        for name, family in COVERED.items()
        if name not in ops or ops[name].module != family
    )
    assert not wrong, f"cover() names ops that its family does not register: {wrong}"

