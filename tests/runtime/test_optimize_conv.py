"""Constant folding, batch-norm folding and fused NCHW convolutions (runtime/optimize_conv.py).

Each rewrite is checked against the unoptimised plan on random graphs: constant folding exactly,
fused convolutions within a stated tolerance (the GEMM's blocking differs, and a folded affine map is
rounded once into the filters): ``|opt - plain| <= 64 * eps * (sum |x| |w| scale + |bias| + |res|)``.
"""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops.registry import apply
from hubkit.runtime.optimize import describe_plan, set_optimize_enabled
from hubkit.runtime.optimize_conv import FoldedConstants, FusedOnnxConv
from tests.helpers_plans import plain_and_optimised

_plans = plain_and_optimised  # the `kernels` fixture (NumPy and Numba runs) is the suite-wide one


@pytest.fixture(autouse=True)
def _channels_first(monkeypatch):
    """These tests look at the NCHW rewrites; the NHWC regions built on them have tests of their own."""
    monkeypatch.setenv("HUBKIT_OPTIMIZE_LAYOUT", "0")


def _kinds(plan):
    return [type(step.fn) for step in plan.steps]


# (kernel, strides, dilations, pads, auto_pad, channels, size)
GEOMETRIES = [
    ((1, 1), (1, 1), (1, 1), (0, 0, 0, 0), "NOTSET", 5, 6),
    ((1, 1), (2, 2), (1, 1), (0, 0, 0, 0), "NOTSET", 4, 7),
    ((3, 3), (1, 1), (1, 1), (1, 1, 1, 1), "NOTSET", 3, 8),
    ((3, 3), (1, 1), (1, 1), (1, 1, 1, 1), "NOTSET", 64, 9),  # Winograd F(4x4, 3x3) when Numba is on
    ((3, 3), (1, 1), (1, 1), (1, 0, 2, 1), "NOTSET", 32, 7),  # Winograd, uneven pads, 4 tiles per image
    ((3, 3), (2, 2), (1, 1), (0, 1, 2, 0), "NOTSET", 4, 9),
    ((5, 3), (1, 2), (2, 1), (0, 0, 0, 0), "NOTSET", 3, 11),
    ((3, 3), (2, 2), (1, 1), (0, 0, 0, 0), "SAME_UPPER", 3, 8),
    ((2, 2), (1, 1), (1, 1), (0, 0, 0, 0), "SAME_LOWER", 2, 5),
]


def _bn(rng, h, m, dtype, name):
    """An imported BatchNormalization: ``(h - mean) * (scale * rsqrt(var + eps)) + bias``, per channel."""
    scale, bias, mean = (hk.Variable(rng.standard_normal(m).astype(dtype), name=f"{name}_{k}", dtype=dtype) for k in "sbm")
    var = hk.Variable(rng.uniform(0.5, 1.5, m).astype(dtype), name=f"{name}_v", dtype=dtype)
    shaped = [hk.reshape(t, [-1, 1, 1]) for t in (scale, bias, mean, var)]
    inv = hk.multiply(shaped[0], hk.rsqrt(hk.add(shaped[3], np.asarray(1e-5, dtype))))
    return hk.add(hk.multiply(hk.subtract(h, shaped[2]), inv), shaped[1]), (scale, bias, mean, var)


def _conv_graph(rng, geometry, dtype, batch, conv_bias, bn, residual, act):
    kernel, strides, dilations, pads, auto_pad, c, size = geometry
    m = int(rng.integers(2, 7)) if c < 64 else 64
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(dtype, [None, c, size, size], name="x")
        w = hk.Variable((rng.standard_normal((m, c, *kernel)) / np.sqrt(c * np.prod(kernel))).astype(dtype), name="w", dtype=dtype)
        ins = [x, w]
        if conv_bias:
            ins.append(hk.Variable(rng.standard_normal(m).astype(dtype), name="b", dtype=dtype))
        h = apply("OnnxConv", *ins, strides=list(strides), dilations=list(dilations), pads=list(pads),
                  auto_pad=auto_pad, group=1)
        if bn:
            h, _ = _bn(rng, h, m, dtype, "bn")
        r = None
        if residual:
            r = hk.placeholder(dtype, h.shape, name="r")
            h = hk.add(h, r) if residual == "right" else hk.add(r, h)
        if act == "relu":
            h = hk.nn.relu(h)
        elif act == "clip":
            h = hk.minimum(hk.maximum(h, np.asarray(0.0, dtype)), np.asarray(6.0, dtype))
    return g, x, r, h


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_onnx_conv_matches_plain_plan(kernels, geometry, dtype):
    rng = np.random.default_rng(abs(hash(geometry)) % 2**32)
    for trial in range(4):
        conv_bias, bn = bool(trial & 1), bool(trial & 2)
        residual = [None, "right", "left"][int(rng.integers(3))]
        act = [None, "relu", "clip"][int(rng.integers(3))]
        batch = int(rng.integers(1, 4))
        g, x, r, y = _conv_graph(rng, geometry, dtype, batch, conv_bias, bn, residual, act)
        plain, opt = _plans(g, [y], [x] + ([r] if r is not None else []))
        assert FusedOnnxConv in _kinds(opt), describe_plan(opt)
        xv = rng.standard_normal((batch, *x.shape[1:])).astype(dtype)
        feeds = [xv]
        if r is not None:
            feeds.append(rng.standard_normal((batch, *y.shape[1:])).astype(dtype) * 3)
        for _ in range(2):  # the second run reads the fold step's cache
            want = plain.run(list(feeds))[0]
            got = opt.run(list(feeds))[0]
            assert got.shape == want.shape and got.dtype == want.dtype
            bound = 64 * np.finfo(dtype).eps * (np.abs(want).max() + 8)
            np.testing.assert_allclose(got, want, rtol=0, atol=bound)


def test_fold_step_recomputes_after_a_variable_changes():
    rng = np.random.default_rng(1)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3, 5, 5])
        w = hk.Variable(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), name="w")
        h = apply("OnnxConv", x, w, strides=[1, 1], dilations=[1, 1], pads=[1, 1, 1, 1])
        h, (_scale, _bias, mean, var) = _bn(rng, h, 4, np.float32, "bn")
        y = hk.nn.relu(h)
    plain, opt = _plans(g, [y], [x])
    assert isinstance(opt.steps[0].fn, FoldedConstants)
    xv = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(opt.run([xv])[0], plain.run([xv])[0], atol=1e-5)
    for v, new in ((var, np.full(4, 4.0, np.float32)), (w, np.ones((4, 3, 3, 3), np.float32))):
        v.assign(new)
        np.testing.assert_allclose(opt.run([xv])[0], plain.run([xv])[0], atol=1e-5)
    mean.assign_add(np.ones(4, np.float32))
    np.testing.assert_allclose(opt.run([xv])[0], plain.run([xv])[0], atol=1e-5)


def test_constant_folding_is_exact_and_outputs_are_read_only():
    rng = np.random.default_rng(2)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 4])
        v = hk.Variable(rng.uniform(0.5, 2.0, 4).astype(np.float32), name="v")
        scale = hk.multiply(hk.rsqrt(hk.add(v, 1e-3)), hk.constant(rng.standard_normal(4).astype(np.float32)))
        y = hk.multiply(x, hk.reshape(scale, [1, 4]))
    plain, opt = _plans(g, [y], [x])
    assert isinstance(opt.steps[0].fn, FoldedConstants)
    assert "Fold(4 steps)" in describe_plan(opt)
    xv = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(opt.run([xv])[0], plain.run([xv])[0])
    values = opt.template.copy()
    for slot, var in opt.var_reads:
        values[slot] = var.value
    folded = opt.steps[0].fn(*[values[s] for s in opt.steps[0].in_slots])
    assert not folded.flags.writeable
    v.assign_sub(np.full(4, 0.25, np.float32))
    np.testing.assert_array_equal(opt.run([xv])[0], plain.run([xv])[0])


def test_training_plans_are_not_folded():
    rng = np.random.default_rng(3)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3, 5, 5])
        w = hk.Variable(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), name="w")
        h = apply("OnnxConv", x, w, strides=[1, 1], dilations=[1, 1], pads=[1, 1, 1, 1])
        h, _ = _bn(rng, h, 2, np.float32, "bn")
        loss = hk.reduce_sum(hk.nn.relu(h))
        train = hk.train.GradientDescent(0.1).minimize(loss)
    _, opt = _plans(g, [loss, train], [x])
    kinds = _kinds(opt)
    assert FoldedConstants not in kinds and FusedOnnxConv not in kinds


def test_fetched_intermediates_stay_unfused():
    rng = np.random.default_rng(4)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3, 6, 6])
        w = hk.Variable(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), name="w")
        c = apply("OnnxConv", x, w, strides=[1, 1], dilations=[1, 1], pads=[0, 0, 0, 0])
        h, _ = _bn(rng, c, 4, np.float32, "bn")
        y = hk.nn.relu(h)
    plain, opt = _plans(g, [y, h], [x])
    xv = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    for got, want in zip(opt.run([xv]), plain.run([xv])):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert "Relu" in describe_plan(opt).split("\n")[-1]  # the ReLU reads the fetched BN output: its own step


@pytest.mark.parametrize("name", ["squeezenet", "resnet50"])
def test_onnx_topologies_match_unoptimised_and_onnxruntime(name, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from tests.importers.onnx.onnx_helpers import light_model

    path = str(tmp_path / "model.onnx")
    model = light_model(name)
    onnx.save(model, path)
    x = np.random.default_rng(5).standard_normal((1, 3, 224, 224)).astype(np.float32)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {model.graph.input[0].name: x})[0]
    module = hk.Module(path)
    (key,) = module.get_input_info_dict()
    got = next(iter(module({key: x}, as_dict=True).values()))
    set_optimize_enabled(False)
    try:
        plain = next(iter(hk.Module(path)({key: x}, as_dict=True).values()))
    finally:
        set_optimize_enabled(None)
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 1e-4 * scale
    assert np.abs(got - plain).max() <= 1e-4 * scale
    from hubkit.runtime.optimize import describe_signature_plan

    assert "OnnxConv+" in describe_signature_plan(module)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_affine_chains_match_plain_plan(kernels, dtype):
    """A pre-activation batch norm (DenseNet): (x - mean) * inv + bias, then ReLU or Clip(0, 6), one step."""
    from hubkit.runtime.optimize_conv import ChannelAffine

    rng = np.random.default_rng(6)
    for act in (None, "relu", "clip"):
        g = hk.Graph()
        with g.as_default():
            x = hk.placeholder(dtype, [None, 5, 4, 3], name="x")
            h, _ = _bn(rng, x, 5, dtype, "bn")
            if act == "relu":
                h = hk.nn.relu(h)
            elif act == "clip":
                h = hk.minimum(hk.maximum(h, np.asarray(0.0, dtype)), np.asarray(6.0, dtype))
            y = h
        plain, opt = _plans(g, [y], [x])
        assert ChannelAffine in _kinds(opt), describe_plan(opt)
        xv = rng.standard_normal((2, 5, 4, 3)).astype(dtype) * 3
        want, got = plain.run([xv])[0], opt.run([xv])[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=16 * np.finfo(dtype).eps * (np.abs(want).max() + 8))


# (kernel, stride, dilation, padding, explicit pads, size)
TF_GEOMETRIES = [
    ((1, 1), 1, 1, "VALID", [], 5),
    ((3, 3), 1, 1, "SAME", [], 6),
    ((3, 3), 2, 1, "SAME", [], 9),
    ((3, 2), 1, 2, "VALID", [], 8),
    ((3, 3), 1, 1, "EXPLICIT", [0, 0, 1, 2, 0, 1, 0, 0], 7),
]


@pytest.mark.parametrize("geometry", TF_GEOMETRIES)
def test_fused_tf1_conv_chains_match_plain_plan(kernels, geometry):
    """TF1 imports: TfConv2D + BiasAdd + inference TfFusedBatchNorm (or Mul/Add) + Relu/Relu6 + max TfPool."""
    from hubkit.runtime.optimize_conv import FusedTfConv

    (kh, kw), stride, dil, padding, explicit, size = geometry
    rng = np.random.default_rng(kh * 100 + stride * 10 + dil)
    for trial in range(6):
        bias, bn, act, pool = bool(trial & 1), ["fused", "ops", None][trial % 3], [None, "relu", "relu6"][trial % 3], trial >= 3
        c, k = int(rng.integers(1, 5)), int(rng.integers(1, 6))
        g = hk.Graph()
        with g.as_default():
            x = hk.placeholder(hk.float32, [None, size, size, c], name="x")
            w = hk.Variable(rng.standard_normal((kh, kw, c, k)).astype(np.float32), name="w")
            h = apply("TfConv2D", x, w, strides=[1, stride, stride, 1], padding=padding, explicit_paddings=explicit,
                      dilations=[1, dil, dil, 1], data_format="NHWC", depthwise=False)
            if bias:
                h = hk.nn.bias_add(h, hk.Variable(rng.standard_normal(k).astype(np.float32), name="b"))
            stats = [hk.Variable(rng.standard_normal(k).astype(np.float32), name=f"s{j}") for j in range(3)]
            stats.append(hk.Variable(rng.uniform(0.5, 1.5, k).astype(np.float32), name="v"))
            if bn == "fused":
                h = apply("TfFusedBatchNorm", h, *stats, epsilon=1e-3, is_training=False, data_format="NHWC",
                          num_outputs=6)[0]
            elif bn == "ops":
                h = hk.add(hk.multiply(h, stats[0]), stats[1])
            if act == "relu":
                h = hk.nn.relu(h)
            elif act == "relu6":
                h = hk.nn.relu6(h)
            if pool:
                h = apply("TfPool", h, kind="max", ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME",
                          explicit_paddings=[])
        plain, opt = _plans(g, [h], [x])
        assert FusedTfConv in _kinds(opt), describe_plan(opt)
        xv = rng.standard_normal((int(rng.integers(1, 4)), size, size, c)).astype(np.float32)
        for _ in range(2):
            want, got = plain.run([xv])[0], opt.run([xv])[0]
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=64 * np.finfo(np.float32).eps * (np.abs(want).max() + 8))


def test_tf1_cnn_fixture_matches_unoptimised_and_recorded_outputs():
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "data", "tf1", "cnn_batch_norm")
    module = hk.Module(path)
    from hubkit.runtime.optimize import describe_signature_plan

    text = describe_signature_plan(module)
    assert "TfConv2D+TfFusedBatchNorm+Relu+TfPool" in text and "TfConv2D+BiasAdd+Mul+Add+Relu" in text
    x = np.random.default_rng(7).standard_normal((5, 10, 10, 3)).astype(np.float32)
    set_optimize_enabled(False)
    try:
        want = hk.Module(path)(x)
    finally:
        set_optimize_enabled(None)
    np.testing.assert_allclose(module(x), want, rtol=1e-5, atol=1e-6)


# -- convolutions writing into their slice of a Concat (ConcatConvs) ------------------------------------
@pytest.mark.parametrize(
    ("c", "size", "kernel", "strides", "pads"),
    [
        (5, 6, (1, 1), (1, 1), (0, 0, 0, 0)),  # one GEMM per batch
        (4, 7, (1, 1), (2, 2), (0, 0, 0, 0)),  # strided 1x1
        (3, 9, (3, 3), (2, 1), (1, 0, 2, 1)),  # im2col
        (32, 7, (3, 3), (1, 1), (1, 1, 1, 1)),  # Winograd when Numba is on
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_into_a_channel_slice_is_bit_identical(kernels, c, size, kernel, strides, pads, dtype):
    from hubkit.ops.conv_nchw import PreparedConv, conv_nchw_fused
    from hubkit.ops.onnx_conv import window_geometry

    rng = np.random.default_rng(c * size)
    m, n = 6, 3
    prep = PreparedConv(rng.standard_normal((m, c, *kernel)).astype(dtype), rng.standard_normal(m).astype(dtype))
    x = rng.standard_normal((n, c, size, size)).astype(dtype)
    out_hw, begin, end = window_geometry((size, size), kernel, strides, (1, 1), pads, "NOTSET")
    res = rng.standard_normal((n, m, *out_hw)).astype(dtype)
    for r, act in ((None, 0), (res, 1), (None, 2)):
        want = conv_nchw_fused(x, prep, r, act, strides, (1, 1), begin, end, out_hw)
        big = np.full((n, m + 5, *out_hw), 7.0, dtype)
        got = conv_nchw_fused(x, prep, r, act, strides, (1, 1), begin, end, out_hw, out=big[:, 2 : 2 + m])
        assert np.shares_memory(got, big)
        np.testing.assert_array_equal(big[:, 2 : 2 + m], want)
        assert (big[:, :2] == 7).all() and (big[:, 2 + m :] == 7).all()
    with pytest.raises(ValueError, match="out of shape"):
        conv_nchw_fused(x, prep, None, 0, strides, (1, 1), begin, end, out_hw, out=big[:, :m].astype(np.float16))


def _concat_graph(rng, dtype, axis, extra_reader):
    """Two conv branches (3x3 with BN + ReLU, 1x1) and the input itself, concatenated along the channels."""
    g = hk.Graph()
    c = 32
    with g.as_default():
        x = hk.placeholder(dtype, [None, c, 7, 7], name="x")

        def conv(k, m, pads, name):
            w = hk.Variable((rng.standard_normal((m, c, k, k)) / np.sqrt(c * k * k)).astype(dtype), name=name, dtype=dtype)
            return apply("OnnxConv", x, w, strides=[1, 1], dilations=[1, 1], pads=pads, auto_pad="NOTSET", group=1)

        a, _ = _bn(rng, conv(3, 8, [1, 1, 1, 1], "wa"), 8, dtype, "bn")
        a = hk.nn.relu(a)
        b = conv(1, 5, [0, 0, 0, 0], "wb")
        y = hk.concat([a, x, b], axis=axis)
        fetches = [y, hk.add(b, np.asarray(1.0, dtype))] if extra_reader else [y]
    return g, x, fetches


@pytest.mark.parametrize("axis", [1, -3])
@pytest.mark.parametrize("extra_reader", [False, True])
def test_concat_of_convolutions_matches_the_unrewritten_plan_exactly(kernels, axis, extra_reader, monkeypatch):
    from hubkit.runtime import optimize_conv
    from hubkit.runtime.optimize_conv import ConcatConvs

    rng = np.random.default_rng(7)
    g, x, fetches = _concat_graph(rng, np.float32, axis, extra_reader)
    plain, opt = _plans(g, fetches, [x])
    steps = [step.fn for step in opt.steps]
    concat = [fn for fn in steps if isinstance(fn, ConcatConvs)]
    assert len(concat) == 1, describe_plan(opt)
    # the 1x1 branch has another reader: it stays a step of its own and is copied in
    assert [fn is None for fn, _ in concat[0].parts] == ([False, True, True] if extra_reader else [False, True, False])
    monkeypatch.setattr(optimize_conv, "rewrite_concat", lambda steps, keep: (steps, 0))
    _, unrewritten = _plans(g, fetches, [x])
    assert not any(isinstance(step.fn, ConcatConvs) for step in unrewritten.steps)
    for batch in (1, 3):
        xv = rng.standard_normal((batch, 32, 7, 7)).astype(np.float32)
        got = opt.run([xv])
        want = unrewritten.run([xv])
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        ref = plain.run([xv])[0]
        np.testing.assert_allclose(got[0], ref, rtol=0, atol=64 * np.finfo(np.float32).eps * (np.abs(ref).max() + 8))


def test_concat_of_convolutions_falls_back_on_mismatched_parts():
    from types import SimpleNamespace

    from hubkit.ops.conv_nchw import PreparedConv
    from hubkit.runtime.optimize_conv import ConcatConvs

    rng = np.random.default_rng(3)
    attrs = {"strides": [1, 1], "dilations": [1, 1], "pads": [1, 1, 1, 1]}
    conv = FusedOnnxConv([SimpleNamespace(op="OnnxConv")], attrs, 1)
    prep = PreparedConv(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), None)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    calls = []

    def concat_fn(*values, axis):
        calls.append([v.shape for v in values])
        return np.concatenate(values, axis=axis)

    fn = ConcatConvs([(conv, 2), (None, 1)], [], concat_fn, {"axis": 1})
    assert fn.label == "Concat(OnnxConv, copy)"
    ok = fn(x, prep, x)  # fits: no call of concat_fn
    assert not calls and ok.shape == (2, 7, 5, 5)
    np.testing.assert_array_equal(ok, np.concatenate([conv(x, prep), x], axis=1))
    # parts that do not fit go the Concat op's way: each computed, then concat_fn (which may raise, as the op does)
    with pytest.raises(ValueError):
        fn(x, prep, x[:, :, :4])
    assert calls == [[(2, 4, 5, 5), (2, 3, 4, 5)]]
    with pytest.raises(ValueError):
        fn(x, prep, x[:1])
    assert calls[1] == [(2, 4, 5, 5), (1, 3, 5, 5)]
    wide = x.astype(np.float64)
    got = fn(x, prep, wide)
    assert got.dtype == np.float64 and len(calls) == 3
    np.testing.assert_array_equal(got, np.concatenate([conv(x, prep), wide], axis=1))
