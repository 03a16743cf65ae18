"""conv2d, conv2d_transpose and pooling against naive NumPy loops, with TensorFlow's padding rules."""

import math

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops import _conv_numpy as conv_numpy


def _tf_pads(size, k, s, d, padding):
    """TF's rule, written out independently: SAME pads the odd pixel after."""
    eff = (k - 1) * d + 1
    if padding == "VALID":
        return (size - eff) // s + 1, (0, 0)
    if isinstance(padding, tuple):
        return (size + sum(padding) - eff) // s + 1, padding
    out = math.ceil(size / s)
    total = max((out - 1) * s + eff - size, 0)
    return out, (total // 2, total - total // 2)


def naive_conv2d(x, w, strides, padding, dilations=(1, 1)):
    n, h, wd, _ = x.shape
    kh, kw, _, o = w.shape
    pads = padding if isinstance(padding, list) else [padding, padding]
    oh, (pt, _) = _tf_pads(h, kh, strides[0], dilations[0], pads[0])
    ow, (pl, _) = _tf_pads(wd, kw, strides[1], dilations[1], pads[1])
    out = np.zeros((n, oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    r = i * strides[0] + a * dilations[0] - pt
                    q = j * strides[1] + b * dilations[1] - pl
                    if 0 <= r < h and 0 <= q < wd:
                        out[:, i, j, :] += x[:, r, q, :] @ w[a, b]
    return out


def naive_conv2d_transpose(x, w, out_hw, strides, padding):
    """Scatter each input pixel through the filter ([kh, kw, out_c, in_c])."""
    n, h, wd, _ = x.shape
    kh, kw, oc, _ = w.shape
    _, (pt, _) = _tf_pads(out_hw[0], kh, strides[0], 1, padding)
    _, (pl, _) = _tf_pads(out_hw[1], kw, strides[1], 1, padding)
    out = np.zeros((n, *out_hw, oc))
    for i in range(h):
        for j in range(wd):
            for a in range(kh):
                for b in range(kw):
                    r, q = i * strides[0] + a - pt, j * strides[1] + b - pl
                    if 0 <= r < out_hw[0] and 0 <= q < out_hw[1]:
                        out[:, r, q, :] += x[:, i, j, :] @ w[a, b].T
    return out


def naive_pool(x, k, s, padding, reduce):
    n, h, wd, c = x.shape
    oh, (pt, _) = _tf_pads(h, k[0], s[0], 1, padding)
    ow, (pl, _) = _tf_pads(wd, k[1], s[1], 1, padding)
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, q0 = i * s[0] - pt, j * s[1] - pl
            win = x[:, max(r0, 0) : r0 + k[0], max(q0, 0) : q0 + k[1], :]
            out[:, i, j, :] = reduce(win, axis=(1, 2))
    return out


def run(fetches, feeds=None):
    return hk.Session(hk.get_default_graph()).run(fetches, feeds or {})


@pytest.fixture(autouse=True)
def fresh_graph():
    g = hk.Graph()
    with g.as_default():
        yield g


CONV_CASES = [
    # (x shape, filter shape, strides, padding, dilations)
    ((2, 7, 6, 3), (3, 3, 3, 4), (1, 1), "SAME", (1, 1)),
    ((2, 7, 6, 3), (3, 3, 3, 4), (2, 2), "SAME", (1, 1)),
    ((1, 7, 7, 2), (4, 4, 2, 3), (2, 2), "SAME", (1, 1)),  # odd total padding: 1 top, 2 bottom
    ((2, 8, 9, 20), (3, 2, 20, 5), (2, 3), "VALID", (1, 1)),
    ((1, 6, 7, 64), (3, 2, 64, 3), (2, 1), "SAME", (1, 2)),  # many channels: the per-tap path
    ((2, 9, 9, 3), (3, 3, 3, 2), (1, 1), "SAME", (2, 2)),
    ((1, 9, 8, 17), (2, 3, 17, 4), (1, 2), "VALID", (2, 1)),
    ((2, 5, 6, 3), (3, 3, 3, 2), (1, 2), [(1, 0), (2, 1)], (1, 1)),
    ((1, 1, 1, 2), (3, 3, 2, 2), (1, 1), "SAME", (1, 1)),
]


@pytest.mark.parametrize("xs, ws, strides, padding, dil", CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_matches_naive_loops(xs, ws, strides, padding, dil, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    hk_dtype = hk.as_dtype(dtype)
    xp = hk.placeholder(hk_dtype, [None, *xs[1:]])
    y = hk.nn.conv2d(xp, hk.constant(w, hk_dtype), strides=list(strides), padding=padding, dilations=list(dil))
    got = run(y, {xp: x})
    want = naive_conv2d(x.astype(np.float64), w.astype(np.float64), strides, padding, dil)
    assert got.dtype == dtype
    assert y.shape == (None, *want.shape[1:])
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_same_padding_puts_the_odd_pixel_after():
    # 5x5 image, 2x2 box filter, SAME: TF pads one row/column at the bottom/right only.
    x = np.arange(1, 26, dtype=np.float32).reshape(1, 5, 5, 1)
    y = run(hk.nn.conv2d(hk.constant(x), hk.constant(np.ones((2, 2, 1, 1), np.float32)), padding="SAME"))
    assert y[0, 0, 0, 0] == 1 + 2 + 6 + 7
    assert y[0, 4, 4, 0] == 25
    assert y[0, 4, 0, 0] == 21 + 22


def test_both_kernel_paths_agree():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 9, 8, 5))
    w = rng.standard_normal((3, 3, 5, 4))
    g = rng.standard_normal((2, 5, 4, 4))
    pads = ((1, 1), (1, 1))
    results = []
    for threshold in (0, 1000):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(conv_numpy, "_IM2COL_MAX_CHANNELS", threshold)
            mp.setattr(conv_numpy, "_IM2COL_FILTER_GRAD_MAX_CHANNELS", threshold)
            results.append((
                conv_numpy._conv2d_nhwc(x, w, (2, 2), (1, 1), pads),
                conv_numpy._conv2d_backprop_filter_nhwc(x, g, (3, 3), (2, 2), (1, 1), pads),
            ))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("in_hw, ks, strides, padding, out_hw", [
    ((3, 4), 3, 2, "SAME", (6, 8)),
    ((3, 4), 3, 2, "VALID", (7, 9)),
    ((4, 4), 4, 2, "SAME", (7, 8)),  # explicit odd output size, allowed by SAME's ceil
    ((5, 5), 3, 1, "SAME", (5, 5)),
])
def test_conv2d_transpose_matches_scatter(in_hw, ks, strides, padding, out_hw):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, *in_hw, 3))
    w = rng.standard_normal((ks, ks, 5, 3))
    xp = hk.placeholder(hk.float64, [None, *in_hw, 3])
    y = hk.nn.conv2d_transpose(xp, hk.constant(w, hk.float64), [None, *out_hw, 5], strides=strides, padding=padding)
    assert y.shape == (None, *out_hw, 5)
    want = naive_conv2d_transpose(x, w, out_hw, (strides, strides), padding)
    np.testing.assert_allclose(run(y, {xp: x}), want, rtol=1e-10, atol=1e-10)


def test_conv2d_transpose_default_output_shape_and_adjointness():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 5, 3))
    w = rng.standard_normal((3, 3, 2, 3))
    for padding, hw in (("SAME", (8, 10)), ("VALID", (9, 11))):
        y = hk.nn.conv2d_transpose(hk.constant(x, hk.float64), hk.constant(w, hk.float64), strides=2, padding=padding)
        assert y.shape == (1, *hw, 2)
        yt = run(y)
        # <conv2d_transpose(x), z> == <x, conv2d(z)> for the same filters, strides and padding.
        z = rng.standard_normal(yt.shape)
        cz = run(hk.nn.conv2d(hk.constant(z, hk.float64), hk.constant(w, hk.float64), strides=2, padding=padding))
        assert np.isclose(np.sum(yt * z), np.sum(x * cz))


def test_conv2d_transpose_with_tensor_output_shape():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 3, 1))
    w = rng.standard_normal((2, 2, 4, 1))
    xp = hk.placeholder(hk.float64, [None, 3, 3, 1])
    sizes = hk.placeholder(hk.int32, [4])
    y = hk.nn.conv2d_transpose(xp, hk.constant(w, hk.float64), sizes, strides=2)
    got = run(y, {xp: x, sizes: [2, 6, 6, 4]})
    np.testing.assert_allclose(got, naive_conv2d_transpose(x, w, (6, 6), (2, 2), "SAME"), atol=1e-12)


@pytest.mark.parametrize("xs, k, s, padding", [
    ((2, 6, 6, 3), (2, 2), (2, 2), "VALID"),
    ((2, 7, 5, 2), (3, 3), (2, 2), "SAME"),
    ((1, 5, 7, 2), (2, 3), (1, 2), "SAME"),
    ((2, 8, 8, 1), (3, 3), (1, 1), "VALID"),
    ((1, 4, 4, 2), (4, 4), (3, 3), "SAME"),
])
def test_pooling_matches_naive_loops(xs, k, s, padding):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xs).astype(np.float32)
    xp = hk.placeholder(hk.float32, [None, *xs[1:]])
    mx = hk.nn.max_pool2d(xp, list(k), list(s), padding)
    av = hk.nn.avg_pool2d(xp, list(k), list(s), padding)
    got_max, got_avg = run([mx, av], {xp: x})
    assert got_max.dtype == np.float32 and got_avg.dtype == np.float32
    np.testing.assert_allclose(got_max, naive_pool(x, k, s, padding, np.max), rtol=1e-6)
    # SAME average pooling divides by the number of real pixels, as TF does.
    np.testing.assert_allclose(got_avg, naive_pool(x, k, s, padding, np.mean), rtol=1e-5, atol=1e-6)
    assert mx.shape == (None, *got_max.shape[1:])


def test_pooling_accepts_tf_nhwc_window_lists_and_defaults_strides_to_ksize():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    a = run(hk.nn.max_pool2d(hk.constant(x), [1, 2, 2, 1], [1, 2, 2, 1], "VALID"))
    b = run(hk.nn.max_pool2d(hk.constant(x), 2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0, :, :, 0], [[5, 7], [13, 15]])


def test_max_pool_gradient_goes_to_the_first_maximum_of_each_window():
    x = hk.placeholder(hk.float64, [1, 4, 4, 1])
    y = hk.nn.max_pool2d(x, 2, 2, "VALID")
    (dx,) = hk.gradients(hk.reduce_sum(y), [x])
    got = run(dx, {x: np.ones((1, 4, 4, 1))})[0, :, :, 0]  # all ties
    np.testing.assert_array_equal(got, [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    # Overlapping windows (stride 1) add up at a shared maximum.
    y2 = hk.nn.max_pool2d(x, 2, 1, "VALID")
    (dx2,) = hk.gradients(hk.reduce_sum(y2), [x])
    v = np.zeros((1, 4, 4, 1))
    v[0, 1, 1, 0] = 5.0
    g2 = run(dx2, {x: v})[0, :, :, 0]
    assert g2[1, 1] == 4 and g2.sum() == 9


def test_conv_shape_errors_name_both_shapes():
    x = hk.placeholder(hk.float32, [None, 8, 8, 3], name="images")
    w = hk.constant(np.zeros((3, 3, 4, 8), np.float32), name="kernel")
    with pytest.raises(hk.GraphError) as e:
        hk.nn.conv2d(x, w)
    msg = str(e.value)
    assert "[None, 8, 8, 3]" in msg and "[3, 3, 4, 8]" in msg and "Conv2D" in msg
    with pytest.raises(hk.GraphError, match="rank 4"):
        hk.nn.conv2d(hk.placeholder(hk.float32, [None, 8, 3]), w)
    with pytest.raises(hk.GraphError, match="does not fit"):
        hk.nn.conv2d(hk.placeholder(hk.float32, [None, 2, 2, 4]), w, padding="VALID")
    small = hk.placeholder(hk.float32, [None, None, None, 4])
    with pytest.raises(hk.OpError, match=r"a 3x3 window .* does not fit in an input of height 2 and width 2"):
        run(hk.nn.conv2d(small, w, padding="VALID"), {small: np.zeros((1, 2, 2, 4), np.float32)})
    with pytest.raises(hk.GraphError, match="dtype"):
        hk.nn.conv2d(hk.placeholder(hk.float64, [None, 8, 8, 4]), w)
    with pytest.raises(hk.GraphError, match=r"input must be floating-point, got .* int32"):
        hk.nn.max_pool2d(hk.placeholder(hk.int32, [None, 8, 8, 4]), 2, 2, "VALID")


def test_bad_arguments_raise_graph_errors_listing_choices():
    x = hk.placeholder(hk.float32, [None, 8, 8, 3])
    w = hk.constant(np.zeros((3, 3, 3, 8), np.float32))
    with pytest.raises(hk.GraphError, match="'SAME', 'VALID'"):
        hk.nn.conv2d(x, w, padding="FULL")
    with pytest.raises(hk.GraphError, match="strides"):
        hk.nn.conv2d(x, w, strides=0)
    with pytest.raises(hk.GraphError, match=r"\['NHWC'\]"):
        hk.nn.conv2d(x, w, data_format="NCHW")
    with pytest.raises(hk.GraphError, match="padding"):
        hk.nn.max_pool2d(x, 2, padding=[[1, 1], [1, 1]])
    with pytest.raises(hk.GraphError, match="output_shape"):
        hk.nn.conv2d_transpose(x, hk.constant(np.zeros((3, 3, 5, 3), np.float32)), [None, 16, 16, 4], strides=2)
    with pytest.raises(hk.GraphError, match="gives outputs"):
        hk.nn.conv2d_transpose(x, hk.constant(np.zeros((3, 3, 5, 3), np.float32)), [None, 20, 20, 5], strides=2)


def test_runtime_channel_mismatch_is_an_op_error():
    x = hk.placeholder(hk.float32, [None, 5, 5, None])
    y = hk.nn.conv2d(x, hk.constant(np.zeros((3, 3, 2, 1), np.float32)))
    with pytest.raises(hk.OpError, match="channels"):
        run(y, {x: np.zeros((1, 5, 5, 3), np.float32)})


def test_unknown_spatial_size_gradients_read_the_shape_at_run_time():
    rng = np.random.default_rng(6)
    x = hk.placeholder(hk.float64, [None, None, None, 2])
    w = hk.constant(rng.standard_normal((3, 3, 2, 2)), hk.float64)
    y = hk.nn.avg_pool2d(hk.nn.conv2d(x, w, strides=2), 2, 2, "SAME")
    dx, dw = hk.gradients(hk.reduce_sum(y), [x, w])
    xv = rng.standard_normal((1, 7, 5, 2))
    gx, gw = run([dx, dw], {x: xv})
    assert gx.shape == xv.shape and gw.shape == (3, 3, 2, 2)


def test_conv_and_max_pool_match_onnxruntime():
    onnx_mod = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    # TF SAME with stride 2 on 9x8: heights pad (1, 1), widths pad (0, 1).
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2], pads=[1, 0, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 8])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, 4, 5, 4]),
         helper.make_tensor_value_info("p", TensorProto.FLOAT, [2, 4, 2, 2])],
        initializer=[numpy_helper.from_array(w.transpose(3, 2, 0, 1).copy(), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx_mod.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want_c, want_p = sess.run(None, {"x": x.transpose(0, 3, 1, 2)})
    c = hk.nn.conv2d(hk.constant(x), hk.constant(w), strides=2, padding="SAME")
    p = hk.nn.max_pool2d(c, 2, 2, "VALID")
    got_c, got_p = run([c, p])
    np.testing.assert_allclose(got_c, want_c.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_p, want_p.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
