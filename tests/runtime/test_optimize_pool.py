"""The pool and LRN rewrites of runtime/optimize_pool.py against the unoptimised plan (the ops' NumPy kernels)."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops.registry import apply
from hubkit.runtime.optimize import describe_plan
from hubkit.runtime.optimize_pool import PoolStep
from tests.helpers_plans import plain_and_optimised

# (kernel, strides, dilations, pads, auto_pad, ceil_mode, (H, W))
POOLS = [
    ((3, 3), (2, 2), (1, 1), (0, 0, 0, 0), "NOTSET", False, (9, 9)),
    ((3, 3), (2, 2), (1, 1), (0, 0, 0, 0), "NOTSET", True, (8, 10)),  # SqueezeNet / Inception: ceil_mode
    ((3, 3), (1, 1), (1, 1), (1, 1, 1, 1), "NOTSET", False, (7, 5)),
    ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1), "NOTSET", False, (12, 12)),  # ResNet's stem pool
    ((2, 3), (1, 2), (2, 1), (1, 0, 0, 2), "NOTSET", True, (9, 11)),
    ((2, 2), (2, 2), (1, 1), (0, 0, 0, 0), "NOTSET", False, (6, 7)),
    ((3, 2), (2, 1), (1, 1), (0, 0, 0, 0), "SAME_UPPER", False, (7, 6)),
    ((2, 2), (1, 1), (1, 1), (0, 0, 0, 0), "SAME_LOWER", False, (5, 4)),
    ((7, 7), (1, 1), (1, 1), (0, 0, 0, 0), "NOTSET", False, (7, 7)),  # ResNet's global average
    ((1, 1), (3, 3), (1, 1), (0, 0, 0, 0), "VALID", True, (8, 8)),
    ((4, 4), (3, 3), (1, 1), (2, 2, 2, 2), "NOTSET", True, (5, 6)),  # windows that are mostly padding
    ((2, 3), (1, 1), (2, 2), (1, 0, 1, 2), "NOTSET", True, (6, 9)),  # stride 1 (whole-plane kernel), dilated
    ((3, 3), (1, 1), (1, 1), (1, 1, 1, 1), "NOTSET", False, (1, 1)),
    ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1), "NOTSET", True, (5, 24)),  # rows of 8+ outputs (vectorised paths)
    ((2, 2), (2, 2), (1, 1), (0, 0, 0, 0), "NOTSET", False, (6, 21)),
    ((3, 2), (1, 1), (1, 1), (1, 2, 0, 1), "NOTSET", False, (4, 19)),
    ((2, 3), (1, 3), (1, 1), (0, 1, 1, 1), "NOTSET", True, (5, 31)),
    ((3, 2), (2, 3), (1, 1), (1, 0, 1, 1), "NOTSET", False, (1, 7)),
    # wider than pool_nchw.PLANE_KERNEL_MAX_WIDTH (32): strided pools run the row kernel
    ((3, 3), (2, 2), (1, 1), (0, 0, 0, 0), "NOTSET", True, (5, 67)),
    ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1), "NOTSET", False, (4, 70)),
    ((2, 3), (3, 2), (2, 1), (1, 0, 0, 2), "NOTSET", True, (9, 66)),
]


def _kinds(plan):
    return [type(step.fn) for step in plan.steps]


def _run_both(build, shape, dtype, seed=0, special=False):
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(dtype, [None, *shape[1:]], name="x")
        y = build(x)
    plain, opt = plain_and_optimised(g, [y], [x])
    assert PoolStep in _kinds(opt), describe_plan(opt)
    xv = np.random.default_rng(seed).standard_normal(shape).astype(dtype) * 3
    if special:
        flat = xv.reshape(-1)
        flat[::7] = -np.inf
        flat[3::11] = np.nan
        flat[5::13] = np.inf
    with np.errstate(invalid="ignore"):  # windows with nothing to average divide 0 by 0, in both plans
        return plain.run([xv])[0], opt.run([xv])[0]


@pytest.mark.parametrize("geometry", POOLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_matches_plain_plan_exactly(kernels, geometry, dtype):
    kernel, strides, dilations, pads, auto_pad, ceil_mode, hw = geometry
    for special in (False, True):
        want, got = _run_both(
            lambda x: apply("OnnxMaxPool", x, kernel_shape=list(kernel), strides=list(strides), pads=list(pads),
                            auto_pad=auto_pad, ceil_mode=ceil_mode, dilations=list(dilations)),
            (2, 3, *hw), dtype, special=special,
        )
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("geometry", [g for g in POOLS if g[2] == (1, 1)])
@pytest.mark.parametrize("include_pad", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_average_pool_matches_plain_plan_exactly(kernels, geometry, include_pad, dtype):
    kernel, strides, _, pads, auto_pad, ceil_mode, hw = geometry
    want, got = _run_both(
        lambda x: apply("OnnxAveragePool", x, kernel_shape=list(kernel), strides=list(strides), pads=list(pads),
                        auto_pad=auto_pad, ceil_mode=ceil_mode, count_include_pad=include_pad),
        (3, 2, *hw), dtype,
    )
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 9])
@pytest.mark.parametrize("shape", [(2, 7, 4, 5), (1, 3, 6), (2, 16, 3, 2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lrn_matches_plain_plan_within_ulps(kernels, size, shape, dtype):
    want, got = _run_both(
        lambda x: apply("OnnxLRN", x, size=size, alpha=1e-2, beta=0.75, bias=2.0), shape, dtype, seed=size
    )
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=0)


def test_lrn_with_another_beta_keeps_its_numpy_kernel():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 4, 3, 3], name="x")
        y = apply("OnnxLRN", x, size=3, beta=0.5)
    plain, opt = plain_and_optimised(g, [y], [x])
    assert PoolStep not in _kinds(opt)
    xv = np.random.default_rng(1).standard_normal((2, 4, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(opt.run([xv])[0], plain.run([xv])[0])


def test_lrn_of_zeros_without_bias_is_nan_as_in_numpy(kernels):
    xv = np.zeros((1, 3, 2, 2), np.float32)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3, 2, 2], name="x")
        y = apply("OnnxLRN", x, size=3, bias=0.0)
    plain, opt = plain_and_optimised(g, [y], [x])
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_array_equal(opt.run([xv])[0], plain.run([xv])[0])
        assert np.isnan(opt.run([xv])[0]).all()


def test_pools_of_unknown_rank_keep_their_numpy_kernel():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, None, name="x")
        y = apply("OnnxMaxPool", x, kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 0, 0])
    plain, opt = plain_and_optimised(g, [y], [x])
    assert PoolStep not in _kinds(opt)
    xv = np.random.default_rng(1).standard_normal((1, 2, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(opt.run([xv])[0], plain.run([xv])[0])


def test_pool_rewrite_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("HUBKIT_OPTIMIZE_POOL", "0")
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 2, 4, 4], name="x")
        y = apply("OnnxLRN", x, size=3)
    _, opt = plain_and_optimised(g, [y], [x])
    assert PoolStep not in _kinds(opt)


def test_plan_description_says_what_a_pool_step_runs():
    from hubkit.runtime.plan_report import _in_place_note

    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 2, 4, 4], name="x")
        y = apply("OnnxMaxPool", x, kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0])
    _, opt = plain_and_optimised(g, [y], [x])
    (step,) = [s for s in opt.steps if isinstance(s.fn, PoolStep)]
    assert "Numba kernel" in _in_place_note(step.fn)
