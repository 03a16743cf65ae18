"""A channels-last convolution's prepared call (hubkit/ops/conv_nhwc_call.py) against conv_nhwc_fused itself.

The prepared call makes conv_nhwc_fused's checks and decisions once per input shape and thread mode. It must give
conv_nhwc_fused's bits on the two forms it takes (1x1 stride 1, the tap form), one thread and split, into a new
array and into a channel slice; write nothing and give None whenever the call differs from the one it was made
for; and decline every other form. The plan's NHWC step (runtime/optimize_layout.py) uses it and prepares it anew
for another shape or thread count.
"""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.errors import OpError
from hubkit.ops import _packed_gemm, conv_nhwc, conv_nhwc_call
from hubkit.ops.conv_nchw import PreparedConv
from hubkit.ops.onnx_conv import window_geometry

pytestmark = pytest.mark.skipif(not _packed_gemm.available(), reason="the LLVM tile kernel does not compile here")

# (batch, channels, size, kernel, strides, pads, filters): each runs in the 1x1 or tap form
CASES = [
    (1, 16, (13, 13), (1, 1), (1, 1), (0, 0, 0, 0), 70),  # 1x1: the input multiplied in place
    (2, 5, (3, 2), (1, 1), (1, 1), (0, 0, 0, 0), 9),  # 12 rows: fewer than split_rows takes
    (1, 16, (13, 13), (3, 3), (1, 1), (1, 1, 1, 1), 40),  # the tap form (too narrow for Winograd when split)
    (2, 3, (17, 16), (3, 3), (2, 2), (0, 1, 1, 0), 33),  # a strided stem
]


def _geometry(hw, kernel, strides, pads):
    out_hw, begin, end = window_geometry(hw, kernel, strides, (1, 1), pads, "NOTSET")
    return strides, (1, 1), begin, end, out_hw


@pytest.fixture(params=[1, 2], ids=["one-thread", "split"])
def mode(request, monkeypatch):
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: request.param)
    return request.param


def _case(n, c, hw, kernel, m, seed=0):
    rng = np.random.default_rng(seed + c * m)
    prep = PreparedConv(rng.standard_normal((m, c, *kernel)).astype(np.float32), rng.standard_normal(m).astype(np.float32))
    x = rng.standard_normal((n, *hw, c)).astype(np.float32)
    return prep, x


@pytest.mark.parametrize(("n", "c", "hw", "kernel", "strides", "pads", "m"), CASES)
@pytest.mark.parametrize("act", [0, 1, 2])
def test_a_prepared_call_gives_conv_nhwc_fused_bits(mode, n, c, hw, kernel, strides, pads, m, act):
    prep, x = _case(n, c, hw, kernel, m)
    geometry = _geometry(hw, kernel, strides, pads)
    call = conv_nhwc_call.prepare(x.shape, prep, act, *geometry)
    assert call is not None and call.tile == mode
    want = conv_nhwc.conv_nhwc_fused(x, prep, None, act, *geometry)
    got = call(x)
    assert got is not None and got.shape == want.shape and got.tobytes() == want.tobytes()
    wide = np.full((*want.shape[:3], m + 7), 5.0, np.float32)  # a channel slice: channels 3 .. 3 + m
    assert call(x, wide[..., 3 : 3 + m]) is not None
    assert wide[..., 3 : 3 + m].tobytes() == want.tobytes()
    assert (wide[..., :3] == 5).all() and (wide[..., 3 + m :] == 5).all()


def test_a_call_it_was_not_prepared_for_writes_nothing(monkeypatch):
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 2)
    prep, x = _case(1, 8, (6, 5), (3, 3), 20)
    geometry = _geometry((6, 5), (3, 3), (1, 1), (1, 1, 1, 1))
    call = conv_nhwc_call.prepare(x.shape, prep, 1, *geometry)
    assert call is not None
    out_shape = (1, 6, 5, 20)
    fresh = np.zeros(out_shape, np.float32)
    refused = [
        (x[:, :5], fresh[:, :5]),  # another input shape
        (x.astype(np.float64), fresh),  # another dtype
        (np.asfortranarray(x), fresh),  # not C-contiguous
        (x.tolist(), fresh),  # not an array
        (x, np.zeros((1, 6, 5, 21), np.float32)),  # an output of another shape
        (x, np.zeros(out_shape, np.float64)),  # or dtype
        (x, np.zeros((1, 6, 5, 40), np.float32)[..., ::2]),  # channels not of unit stride
        (x, np.zeros((1, 5, 6, 20), np.float32).transpose(0, 2, 1, 3)),  # pixels not one run of rows
    ]
    for xi, out in refused:
        before = out.copy()
        assert call(xi, out) is None
        assert np.array_equal(out, before)
    read_only = fresh.copy()
    read_only.flags.writeable = False
    assert call(x, read_only) is None
    over = np.zeros(x.size + 600, np.float32)  # an output over the input's memory: conv_nhwc_fused copies
    xs = over[: x.size].reshape(x.shape)
    xs[...] = x
    assert call(xs, over[100 : 100 + 600].reshape(out_shape)) is None
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)  # the thread count changed
    assert call(x, fresh) is None and not fresh.any()


@pytest.mark.parametrize(("c", "hw", "kernel", "strides", "pads", "dtype"), [
    (48, (28, 27), (3, 3), (1, 1), (1, 1, 1, 1), np.float32),  # Winograd
    (5, (12, 11), (1, 1), (2, 2), (0, 0, 0, 0), np.float32),  # a strided 1x1: a subsampled copy
    (256, (5, 5), (3, 3), (2, 2), (1, 1, 1, 1), np.float32),  # past the tap form's tile bytes: gathered
    (5, (6, 7), (1, 1), (1, 1), (0, 0, 0, 0), np.float64),  # not float32
])
def test_other_forms_are_left_to_conv_nhwc_fused(mode, c, hw, kernel, strides, pads, dtype):
    prep, x = _case(1, c, hw, kernel, 64)
    prep = PreparedConv(prep.w2.reshape(64, c, *kernel).astype(dtype), prep.bias.astype(dtype))
    assert conv_nhwc_call.prepare(x.shape, prep, 1, *_geometry(hw, kernel, strides, pads)) is None


def test_without_the_tile_kernel_nothing_is_prepared(monkeypatch):
    monkeypatch.setattr(_packed_gemm, "available", lambda: False)
    prep, x = _case(1, 8, (5, 5), (1, 1), 8)
    assert conv_nhwc_call.prepare(x.shape, prep, 0, *_geometry((5, 5), (1, 1), (1, 1), (0, 0, 0, 0))) is None


def test_a_geometry_out_of_range_is_refused_as_conv_nhwc_fused_refuses_it():
    prep, x = _case(1, 4, (5, 5), (3, 3), 8)
    with pytest.raises(OpError, match="geometry out of range"):
        conv_nhwc_call.prepare(x.shape, prep, 0, (1, 1), (1, 1), (0, 0), (0, 0), (5, 5))
    with pytest.raises(OpError, match="channels"):
        conv_nhwc_call.prepare((1, 5, 5, 3), prep, 0, (1, 1), (1, 1), (1, 1), (1, 1), (5, 5))


def test_the_plan_step_calls_the_prepared_form_and_prepares_anew_for_another_shape(monkeypatch):
    from hubkit.runtime import optimize_layout
    from hubkit.runtime.optimize_conv import FusedOnnxConv

    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 2)
    prep, x = _case(1, 16, (9, 9), (1, 1), 24)
    conv = FusedOnnxConv.__new__(FusedOnnxConv)
    conv.nodes, conv.act, conv.label = (), 1, "Conv"
    conv.attrs = {"strides": [1, 1], "dilations": [1, 1], "pads": [0, 0, 0, 0], "group": 1}
    step = optimize_layout.NhwcConv(conv)
    slow = []
    fused = conv_nhwc.conv_nhwc_fused
    monkeypatch.setattr(conv_nhwc, "conv_nhwc_fused", lambda *a, **k: slow.append(1) or fused(*a, **k))
    want = fused(x, prep, None, 1, (1, 1), (1, 1), (0, 0), (0, 0), (9, 9))
    for _ in range(3):
        assert step(x, prep).tobytes() == want.tobytes()
    assert len(slow) == 1  # the first call prepares; the others take the prepared form
    x2 = x[:, :7].copy()  # another shape: the general path once, then a new prepared call
    for _ in range(3):
        assert step(x2, prep).tobytes() == fused(x2, prep, None, 1, (1, 1), (1, 1), (0, 0), (0, 0), (7, 9)).tobytes()
    assert len(slow) == 2
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)  # another thread mode: the same
    for _ in range(3):
        assert step(x2, prep).tobytes() == want[:, :7].tobytes()
    assert len(slow) == 3


@pytest.mark.parametrize(("n", "c", "hw", "kernel", "strides", "pads", "m"), CASES)
def test_a_residual_added_in_place_gives_conv_nhwc_fused_bits(mode, n, c, hw, kernel, strides, pads, m):
    prep, x = _case(n, c, hw, kernel, m, seed=1)
    geometry = _geometry(hw, kernel, strides, pads)
    call = conv_nhwc_call.prepare(x.shape, prep, 1, *geometry)
    res = np.random.default_rng(2).standard_normal((n, *geometry[4], m)).astype(np.float32)
    want = res.copy()
    assert conv_nhwc.conv_nhwc_fused(x, prep, want, 1, *geometry, out=want) is want  # in place
    got = res.copy()
    assert call(x, got, True) is got and got.tobytes() == want.tobytes()
    strided = np.zeros((n, *geometry[4], m + 3), np.float32)[..., :m]  # conv_nhwc_fused adds it after: declined
    strided[...] = res
    assert call(x, strided, True) is None and np.array_equal(strided, res)
    assert call(x, None, True) is None
