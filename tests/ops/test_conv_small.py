"""The direct few-channel convolution (RGB layers) with its fused bias, activation and 2x2 max pool, against float64."""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.ops import _conv_small, _numba, conv_fused
from hubkit.ops._epilogue import NONE, RELU, RELU6

pytestmark = pytest.mark.skipif(not _numba.numba_enabled(), reason="numba is not installed")


def reference_conv(x, w, strides, dilations, pads):
    """float64 cross-correlation of NHWC ``x`` and HWIO ``w``, one shifted product per tap."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    kh, kw, _, k = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, k))
    for i in range(kh):
        for j in range(kw):
            win = xp[:, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw]
            out += win @ w[i, j]
    return out


def _act(y, act):
    return {NONE: y, RELU: np.maximum(y, 0), RELU6: np.clip(y, 0, 6)}[act]


def _pool2(y):
    n, h, w, k = y.shape
    y = y[:, : h // 2 * 2, : w // 2 * 2]
    return y.reshape(n, h // 2, 2, w // 2, 2, k).max(axis=(2, 4))


CASES = [  # n, h, w, c, kh, kw, k, strides, dilations, pads
    (2, 9, 7, 3, 3, 3, 5, (1, 1), (1, 1), ((1, 1), (1, 1))),
    (3, 96, 70, 3, 3, 3, 32, (1, 1), (1, 1), ((1, 1), (1, 1))),  # more than one 64-pixel segment
    (1, 11, 13, 3, 3, 3, 40, (1, 1), (1, 1), ((0, 0), (0, 0))),  # 40 channels
    (2, 12, 17, 1, 5, 5, 8, (1, 1), (1, 1), ((2, 2), (2, 2))),  # 25 terms
    (2, 15, 14, 3, 3, 3, 16, (2, 2), (1, 1), ((0, 1), (0, 1))),  # stride 2, SAME-style padding
    (1, 16, 19, 2, 3, 3, 7, (1, 2), (2, 1), ((2, 2), (0, 3))),  # mixed strides and dilations
    (2, 7, 9, 3, 1, 3, 3, (1, 1), (1, 1), ((0, 0), (1, 1))),
    (1, 5, 5, 4, 2, 3, 6, (1, 1), (1, 1), ((0, 1), (1, 1))),  # 24 terms, 4 channels
]


@pytest.mark.parametrize(("n", "h", "w", "c", "kh", "kw", "k", "strides", "dilations", "pads"), CASES)
@pytest.mark.parametrize("act", [NONE, RELU, RELU6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_a_float64_reference(n, h, w, c, kh, kw, k, strides, dilations, pads, act, dtype):
    rng = np.random.default_rng(h * 100 + c * 10 + kh)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    filters = rng.standard_normal((kh, kw, c, k)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype)
    conv = reference_conv(x, filters, strides, dilations, pads)
    bound = reference_conv(np.abs(x), np.abs(filters), strides, dilations, pads) + np.abs(bias)
    tol = 8 * np.finfo(dtype).eps * bound
    ref = _pool2(_act(conv + bias, act))
    tol = _pool2(tol)
    out = np.full(ref.shape, np.nan, dtype)
    assert _conv_small.conv_small_bias_act_max_pool(x, filters, bias, act, strides, dilations, pads, out)
    assert np.all(np.abs(out - ref) <= tol)
    no_bias = np.full(ref.shape, np.nan, dtype)
    assert _conv_small.conv_small_bias_act_max_pool(x, filters, None, act, strides, dilations, pads, no_bias)
    assert np.all(np.abs(no_bias - _pool2(_act(conv, act))) <= tol)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("pool_padding", ["SAME", "VALID"])
@pytest.mark.parametrize(("h", "w"), [(96, 96), (9, 11), (10, 7)])
def test_fused_steps_use_it_and_match(padding, pool_padding, h, w, monkeypatch):
    used = []
    real = _conv_small.conv_small_bias_act_max_pool
    monkeypatch.setattr(_conv_small, "conv_small_bias_act_max_pool", lambda *a: used.append(1) or real(*a))
    rng = np.random.default_rng(h + w)
    x = rng.random((3, h, w, 3), dtype=np.float32)
    filters = rng.standard_normal((3, 3, 3, 32)).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)
    got = conv_fused.conv2d_bias_act_max_pool(x, filters, bias, RELU, (1, 1), (1, 1), padding, (2, 2), (2, 2),
                                              pool_padding)
    full = conv_fused.conv2d_bias_act(x, filters, bias, RELU, (1, 1), (1, 1), padding)
    pads = ((1, 1), (1, 1)) if padding == "SAME" else ((0, 0), (0, 0))
    ref = np.maximum(reference_conv(x, filters, (1, 1), (1, 1), pads) + bias, 0)
    tol = 8 * np.finfo(np.float32).eps * (reference_conv(x, np.abs(filters), (1, 1), (1, 1), pads) + np.abs(bias))
    assert np.all(np.abs(full - ref) <= tol)
    oh, ow = ref.shape[1:3]
    if pool_padding == "SAME" and (oh % 2 or ow % 2):  # padded pool windows: the generic path, same values
        ref = np.pad(ref, ((0, 0), (0, oh % 2), (0, ow % 2), (0, 0)), constant_values=-np.inf)
        tol = np.pad(tol, ((0, 0), (0, oh % 2), (0, ow % 2), (0, 0)), constant_values=0)
    assert got.shape == _pool2(ref).shape
    assert np.all(np.abs(got - _pool2(ref)) <= _pool2(tol))
    assert used == ([] if pool_padding == "SAME" and (oh % 2 or ow % 2) else [1])


def test_nan_and_inf_propagate_as_the_ops_do():
    x = np.ones((1, 8, 8, 3), np.float32)
    x[0, 2, 2, 1] = np.nan
    x[0, 7, 7, 0] = np.inf
    filters = np.ones((3, 3, 3, 2), np.float32)
    out = np.empty((1, 4, 4, 2), np.float32)
    assert _conv_small.conv_small_bias_act_max_pool(x, filters, None, RELU, (1, 1), (1, 1), ((1, 1), (1, 1)), out)
    with np.errstate(invalid="ignore"):
        ref = _pool2(np.maximum(reference_conv(x, filters, (1, 1), (1, 1), ((1, 1), (1, 1))), 0))
    assert np.isnan(ref).any() and np.isinf(ref).any()
    np.testing.assert_array_equal(out, ref.astype(np.float32))  # NaN where the NaN is read, inf where the inf is


def test_declines_what_it_cannot_run():
    x = np.ones((1, 6, 6, 4), np.float32)
    out = np.empty((1, 2, 2, 2), np.float32)
    none = ((0, 0), (0, 0))
    f32 = np.ones((3, 3, 3, 2), np.float32)
    run = _conv_small.conv_small_bias_act_max_pool
    assert not run(x, np.ones((3, 3, 4, 2), np.float32), None, NONE, (1, 1), (1, 1), none, out)  # 36 terms
    assert not run(x[..., :3], f32.astype(np.float64), None, NONE, (1, 1), (1, 1), none, out)  # dtypes differ
    assert not run(x[..., :3], f32, None, NONE, (1, 1), (1, 1), none, out[:, :1])  # wrong output size
    _numba.set_numba_enabled(False)
    try:
        assert not run(x[..., :3], f32, None, NONE, (1, 1), (1, 1), none, out)
    finally:
        _numba.set_numba_enabled(None)


@pytest.mark.parametrize(("channels", "direct"), [(3, True), (8, False)])
def test_plan_description_names_the_kernel(channels, direct):
    import hubkit as hk
    from hubkit.runtime.plan_report import _in_place_note
    from tests.helpers_plans import plain_and_optimised

    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 8, 8, channels], name="x")
        w = hk.constant(np.ones((3, 3, channels, 4), np.float32))
        y = hk.nn.max_pool2d(hk.nn.relu(hk.nn.conv2d(x, w, strides=1, padding="SAME")), ksize=2, strides=2,
                             padding="VALID")
    _, opt = plain_and_optimised(g, [y], [x])
    notes = [_in_place_note(s.fn) for s in opt.steps if "Conv2D" in getattr(s.fn, "label", "")]
    assert len(notes) == 1
    assert ("direct Numba convolution" in notes[0]) == direct


def test_image_chunks_on_two_threads_match_one(monkeypatch):
    """With two BLAS threads the second half of the image chunks runs on the helper thread (ops/_chunks.py)."""
    import threading

    rng = np.random.default_rng(21)
    x = rng.standard_normal((5, 18, 14, 3)).astype(np.float32)
    filters = rng.standard_normal((3, 3, 3, 16)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    pads = ((1, 1), (1, 1))
    monkeypatch.setattr(_conv_small, "_PLANES_BLOCK_BYTES", 1)  # one image per chunk: five chunks
    one = np.empty((5, 9, 7, 16), np.float32)
    monkeypatch.setattr(_conv_small, "two_threads", lambda: False)
    assert _conv_small.conv_small_bias_act_max_pool(x, filters, bias, RELU, (1, 1), (1, 1), pads, one)
    names = set()
    real = _conv_small.run_chunks

    def spying(starts, run, split):  # records the threads that run chunks
        real(starts, lambda s: names.add(threading.current_thread().name) or run(s), split)

    monkeypatch.setattr(_conv_small, "two_threads", lambda: True)
    monkeypatch.setattr(_conv_small, "run_chunks", spying)
    two = np.empty_like(one)
    assert _conv_small.conv_small_bias_act_max_pool(x, filters, bias, RELU, (1, 1), (1, 1), pads, two)
    np.testing.assert_array_equal(two, one)  # the same kernel on the same images: the same bits
    assert "hubkit-chunks" in names
