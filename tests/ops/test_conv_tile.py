"""NCHW convolutions as a pixel-major GEMM on the LLVM tile kernel (hubkit/ops/_conv_tile.py).

Each case runs through :func:`conv_nchw_fused` with the tile form forced on (thresholds lowered, one BLAS
thread) and off, and against a float64 direct convolution. Tolerance: the float32 sums run in another
order (depth ordered ``(kh, kw, C)``, FMA), so ``|got - exact| <= 8 * eps * (|x| * |w| + |bias| + |res|)``
per output, and the same bound between the two paths.
"""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.ops import _conv_tile, _packed_gemm, conv_nchw
from hubkit.ops.conv_nchw import PreparedConv, conv_nchw_fused
from hubkit.ops.onnx_conv import window_geometry
from tests.ops.test_conv_nchw_blocks import _reference


@pytest.fixture
def tile(monkeypatch):
    """The tile form on for any size (returns a list that counts its calls); skipped where it cannot run."""
    if not _packed_gemm.available():
        pytest.skip("the LLVM tile kernel does not compile here")
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)
    monkeypatch.setattr(_packed_gemm._STATE, "wide", True)  # 3-row tiles on hosts without AVX-512: same code
    for name, value in (("MIN_PIXELS", 1), ("MIN_OUTPUTS", 1), ("MIN_OUTPUTS_POINTWISE", 1), ("MIN_DEPTH", 1)):
        monkeypatch.setattr(_conv_tile, name, value)
    calls: list[int] = []
    run = _conv_tile.conv_tile

    def counted(*args, **kwargs):
        calls.append(1)
        return run(*args, **kwargs)

    monkeypatch.setattr(_conv_tile, "conv_tile", counted)
    return calls


def _off(monkeypatch):
    for name in ("MAX_PIXELS", "MAX_PIXELS_STRIDED", "MAX_PIXELS_POINTWISE"):
        monkeypatch.setattr(_conv_tile, name, 0)


def _on(monkeypatch):
    for name in ("MAX_PIXELS", "MAX_PIXELS_STRIDED", "MAX_PIXELS_POINTWISE"):
        monkeypatch.setattr(_conv_tile, name, 10**9)


# (channels, outputs, (H, W), kernel, strides, dilations, pads, images)
CASES = [
    (8, 40, (7, 7), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1),  # 1x1 stride 1: a transposed copy only
    (5, 33, (9, 7), (1, 1), (2, 2), (1, 1), (0, 0, 0, 0), 3),  # 1x1 stride 2, odd sizes, several images
    (6, 64, (7, 7), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),  # 3x3 on a 7x7 map
    (7, 35, (14, 13), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 2),  # 3x3 stride 2, odd width
    (4, 17, (11, 10), (3, 3), (1, 1), (1, 1), (2, 0, 1, 1), 3),  # asymmetric pads
    (3, 9, (12, 11), (3, 2), (1, 2), (2, 1), (1, 0, 2, 1), 2),  # dilation, mixed strides
    (4, 31, (6, 9), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2), 5),  # 5x5, more images than one chunk holds
    (3, 12, (5, 5), (1, 1), (1, 1), (1, 1), (1, 0, 0, 1), 1),  # a padded 1x1: gathered, not pointwise
]


@pytest.mark.parametrize(("c", "m", "hw", "kernel", "strides", "dilations", "pads", "n"), CASES)
def test_tile_form_matches_the_nchw_path_and_reference(tile, monkeypatch, c, m, hw, kernel, strides, dilations, pads, n):
    rng = np.random.default_rng(c * m + n)
    monkeypatch.setattr(_conv_tile, "CHUNK_BYTES", 4 * c * kernel[0] * kernel[1] * hw[0] * hw[1] * 2)  # 2 images
    w = rng.standard_normal((m, c, *kernel)).astype(np.float32)
    out_hw, begin, end = window_geometry(hw, kernel, strides, dilations, pads, "NOTSET")
    geometry = (strides, dilations, begin, end, out_hw)
    x = rng.standard_normal((n, c, *hw)).astype(np.float32)
    res = (rng.standard_normal((n, m, *out_hw)) * 3).astype(np.float32)
    for bias in (None, rng.standard_normal(m).astype(np.float32)):
        prep = PreparedConv(w, bias)
        for r, act in ((None, 0), (res, 1), (None, 2), (res, 0), (None, 1)):
            _off(monkeypatch)
            before = len(tile)
            plain = conv_nchw_fused(x, prep, r, act, *geometry).copy()
            assert len(tile) == before
            _on(monkeypatch)
            big = np.full((n, m + 5, *out_hw), 7.0, np.float32)
            got = conv_nchw_fused(x, prep, r, act, *geometry, out=big[:, 2 : 2 + m])  # a strided channel slice
            assert len(tile) == before + 1
            assert got.shape == plain.shape and got.dtype == np.float32
            assert (big[:, :2] == 7).all() and (big[:, 2 + m :] == 7).all()
            b = np.zeros(m) if bias is None else bias
            want = _reference(x, w, b, r, act, strides, dilations, begin, end, out_hw)
            scale = _reference(np.abs(x), np.abs(w), np.abs(b), None if r is None else np.abs(r), 0,
                               strides, dilations, begin, end, out_hw)
            eps = np.finfo(np.float32).eps
            assert np.all(np.abs(got - want) <= 8 * eps * scale + eps)
            assert np.all(np.abs(got - plain) <= 16 * eps * scale + eps)
            fresh = conv_nchw_fused(x, prep, r, act, *geometry)  # a whole output, several images in one GEMM
            np.testing.assert_array_equal(fresh, got)


def test_nan_and_signed_zero_go_through_the_epilogue_as_on_the_nchw_path(tile, monkeypatch):
    rng = np.random.default_rng(3)
    n, c, m = 2, 6, 40
    w = rng.standard_normal((m, c, 3, 3)).astype(np.float32)
    w[5:9] = 0.0  # outputs whose sum is +-0.0
    bias = rng.standard_normal(m).astype(np.float32)
    bias[5], bias[6], bias[7] = -0.0, np.nan, 0.0
    x = rng.standard_normal((n, c, 7, 7)).astype(np.float32)
    x[1, 2, 3, 4] = np.nan  # spreads to the outputs whose window reads it
    geometry = ((1, 1), (1, 1), (1, 1), (1, 1), (7, 7))
    res = rng.standard_normal((n, m, 7, 7)).astype(np.float32)
    res[0, 8] = -0.0
    res[1, 10, 2, 2] = np.nan
    prep = PreparedConv(w, bias)
    for r in (None, res):
        for act in (0, 1, 2):
            _off(monkeypatch)
            plain = conv_nchw_fused(x, prep, r, act, *geometry).copy()
            _on(monkeypatch)
            got = conv_nchw_fused(x, prep, r, act, *geometry)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(plain))
            assert np.isnan(got).any()
            zeros = plain == 0
            np.testing.assert_array_equal(got == 0, zeros)
            np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(plain[zeros]))
            finite = np.isfinite(plain)
            np.testing.assert_allclose(got[finite], plain[finite], rtol=0, atol=1e-4)


def test_filters_are_packed_once_per_prepared_conv_and_again_for_new_weights(tile, monkeypatch):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 8, 7, 7)).astype(np.float32)
    geometry = ((1, 1), (1, 1), (1, 1), (1, 1), (7, 7))
    _on(monkeypatch)
    packs: list[int] = []
    pack = _conv_tile.pack_filters
    monkeypatch.setattr(_conv_tile, "pack_filters", lambda *a: packs.append(1) or pack(*a))
    results = []
    for w in (rng.standard_normal((48, 8, 3, 3)).astype(np.float32), np.ones((48, 8, 3, 3), np.float32)):
        prep = PreparedConv(w, None)
        for _ in range(2):
            results.append(conv_nchw_fused(x, prep, None, 0, *geometry).copy())
        want = _reference(x, w, np.zeros(48), None, 0, *geometry)
        np.testing.assert_allclose(results[-1], want, rtol=1e-5, atol=1e-4)
    assert len(packs) == 2
    np.testing.assert_array_equal(results[0], results[1])


def test_what_the_tile_form_takes(monkeypatch):
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)
    monkeypatch.setattr(_packed_gemm._STATE, "wide", True)
    monkeypatch.setattr(_packed_gemm, "available", lambda: True)
    f32 = np.dtype(np.float32)
    wanted = _conv_tile.wanted
    assert wanted(512, 512, 3, 3, (1, 1), False, 49, f32)  # ResNet-50's 3x3 on 7x7 maps
    assert wanted(256, 256, 3, 3, (1, 1), False, _conv_tile.MAX_PIXELS, f32)
    assert not wanted(256, 256, 3, 3, (1, 1), False, _conv_tile.MAX_PIXELS + 1, f32)
    assert wanted(128, 128, 3, 3, (2, 2), False, _conv_tile.MAX_PIXELS_STRIDED, f32)
    assert not wanted(128, 128, 3, 3, (2, 2), False, _conv_tile.MAX_PIXELS_STRIDED + 1, f32)
    assert wanted(2048, 512, 1, 1, (1, 1), True, _conv_tile.MAX_PIXELS_POINTWISE, f32)
    assert not wanted(2048, 512, 1, 1, (1, 1), True, _conv_tile.MAX_PIXELS_POINTWISE + 1, f32)
    assert not wanted(512, _conv_tile.MIN_OUTPUTS_POINTWISE - 1, 1, 1, (1, 1), True, 49, f32)
    assert not wanted(1024, 1000, 1, 1, (1, 1), True, 1, f32)  # a classifier as a 1x1 convolution: GEMV
    assert wanted(512, 512, 3, 3, (1, 1), False, _conv_tile.MIN_PIXELS, f32)
    assert not wanted(512, 512, 3, 3, (1, 1), False, _conv_tile.MIN_PIXELS - 1, f32)
    assert not wanted(3, 64, 3, 3, (2, 2), False, 49, f32)  # depth 27: below MIN_DEPTH
    assert not wanted(512, 512, 3, 3, (1, 1), False, 49, np.dtype(np.float64))
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 2)  # OpenBLAS on two threads: its GEMM
    assert not wanted(512, 512, 3, 3, (1, 1), False, 49, f32)
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)
    monkeypatch.setattr(_packed_gemm._STATE, "wide", False)  # no AVX-512
    assert not wanted(512, 512, 3, 3, (1, 1), False, 49, f32)


def test_several_images_of_1x1_keep_the_one_gemm_form(tile, monkeypatch):
    rng = np.random.default_rng(6)
    monkeypatch.setattr(conv_nchw, "BATCH_GEMM_MIN_OUTPUTS", 1)
    _on(monkeypatch)
    w = rng.standard_normal((40, 8, 1, 1)).astype(np.float32)
    x = rng.standard_normal((3, 8, 7, 7)).astype(np.float32)
    conv_nchw_fused(x, PreparedConv(w, None), None, 0, (1, 1), (1, 1), (0, 0), (0, 0), (7, 7))
    assert not tile
    conv_nchw_fused(x[:1], PreparedConv(w, None), None, 0, (1, 1), (1, 1), (0, 0), (0, 0), (7, 7))
    assert tile


def test_imported_resnet_on_the_tile_form_matches_the_unoptimised_plan(tile, monkeypatch, tmp_path):
    onnx = pytest.importorskip("onnx")
    import hubkit as hk
    from hubkit.runtime.optimize import set_optimize_enabled
    from tests.importers.onnx.onnx_helpers import light_model

    monkeypatch.setenv("HUBKIT_OPTIMIZE_LAYOUT", "0")  # channels-first: runtime/optimize_layout.py off
    path = str(tmp_path / "model.onnx")
    onnx.save(light_model("resnet50"), path)
    x = np.random.default_rng(5).standard_normal((1, 3, 224, 224)).astype(np.float32)
    module = hk.Module(path)
    (key,) = module.get_input_info_dict()
    got = next(iter(module({key: x}, as_dict=True).values()))
    assert len(tile) >= 10  # the 3x3 layers on 7x7 maps, the stride-2 layers, the 1x1 layers on 7x7 maps
    set_optimize_enabled(False)
    try:
        plain = next(iter(hk.Module(path)({key: x}, as_dict=True).values()))
    finally:
        set_optimize_enabled(None)
    assert np.abs(got - plain).max() <= 1e-4 * np.abs(plain).max()


def test_optimised_plan_repacks_after_the_filter_variable_is_written(tile, monkeypatch):
    import hubkit as hk
    from hubkit.ops.registry import apply
    from tests.helpers_plans import plain_and_optimised

    rng = np.random.default_rng(8)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 8, 7, 7])
        w = hk.Variable(rng.standard_normal((40, 8, 3, 3)).astype(np.float32), name="w")
        b = hk.Variable(rng.standard_normal(40).astype(np.float32), name="b")
        y = hk.nn.relu(apply("OnnxConv", x, w, b, strides=[2, 2], dilations=[1, 1], pads=[1, 0, 1, 1]))
    plain, opt = plain_and_optimised(g, [y], [x])
    packs: list[int] = []
    pack = _conv_tile.pack_filters
    monkeypatch.setattr(_conv_tile, "pack_filters", lambda *a: packs.append(1) or pack(*a))
    xv = rng.standard_normal((2, 8, 7, 7)).astype(np.float32)
    for new in (None, np.ones((40, 8, 3, 3), np.float32), None):
        if new is not None:
            w.assign(new)
        before = len(tile)
        got, want = opt.run([xv])[0], plain.run([xv])[0]
        assert len(tile) == before + 1
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * (np.abs(want).max() + 1))
    assert len(packs) == 2  # once, and again for the written filters
