"""Winograd F(2x2, 3x3) forward convolution against an independent float64 reference and the im2col kernel."""

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops import _conv_numpy as conv_numpy
from hubkit.ops import _winograd


def reference_conv3x3(x, w, pads):
    """Zero-pad, then sum the nine taps' matmuls, in float64."""
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh, ow = xp.shape[1] - 2, xp.shape[2] - 2
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(3):
        for j in range(3):
            out += xp[:, i : i + oh, j : j + ow] @ w[i, j].astype(np.float64)
    return out


def assert_close(got, want, dtype):
    scale = np.abs(want).max()
    if dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * scale)


@pytest.fixture
def always_winograd(monkeypatch):
    """Every 3x3 stride-1 convolution takes the Winograd path, whatever its size."""
    monkeypatch.setattr(conv_numpy, "_WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_numpy, "_WINOGRAD_MIN_TILES", 1)


@pytest.fixture
def used(monkeypatch):
    """Counts the calls of the Winograd kernel."""
    calls = []
    real = _winograd.conv3x3

    def spy(*args):
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(_winograd, "conv3x3", spy)
    return calls


SHAPES = [
    # (x shape, out channels, pads): odd/even sizes, SAME/VALID/explicit, 1x1 to 9x11 outputs
    ((1, 1, 1, 2), 3, ((1, 1), (1, 1))),  # SAME on one pixel: one tile, mostly padding
    ((2, 3, 3, 1), 1, ((0, 0), (0, 0))),  # VALID, a single output
    ((3, 4, 4, 5), 4, ((1, 1), (1, 1))),
    ((1, 5, 7, 3), 2, ((1, 1), (1, 1))),  # odd output height and width
    ((2, 6, 5, 4), 3, ((0, 0), (0, 0))),  # VALID: 4x3 outputs
    ((2, 7, 8, 6), 5, ((2, 0), (0, 3))),  # explicit, uneven pads
    ((1, 9, 11, 2), 6, ((1, 0), (2, 1))),
    ((4, 6, 6, 3), 2, ((3, 3), (3, 3))),  # pads wider than the filter: whole tiles of zeros
]


@pytest.mark.parametrize("xs, k, pads", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_reference_for_many_shapes(always_winograd, used, xs, k, pads, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((3, 3, xs[3], k)).astype(dtype)
    got = conv_numpy._conv2d_nhwc(x, w, (1, 1), (1, 1), pads)
    want = reference_conv3x3(x, w, pads)
    assert used, "the Winograd kernel was not called"
    assert got.shape == want.shape and got.dtype == dtype
    assert_close(got, want, dtype)


@pytest.mark.parametrize("block_bytes", [1, 20_000, 1 << 30])  # one tile row, a few rows/images, all at once
@pytest.mark.parametrize("hw", [(8, 8), (7, 9)])
def test_blocks_over_images_and_tile_rows_agree(always_winograd, monkeypatch, block_bytes, hw):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, *hw, 7))
    w = rng.standard_normal((3, 3, 7, 6))
    pads = ((1, 1), (1, 1))
    monkeypatch.setattr(_winograd, "BLOCK_BYTES", block_bytes)
    assert_close(conv_numpy._conv2d_nhwc(x, w, (1, 1), (1, 1), pads), reference_conv3x3(x, w, pads), np.float64)


def test_non_contiguous_inputs_and_filters(always_winograd):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6, 7, 4))
    w = rng.standard_normal((3, 3, 4, 5))
    pads = ((1, 1), (0, 2))
    want = reference_conv3x3(x, w, pads)
    for xl, wl in ((np.asfortranarray(x), w), (x[:, ::-1][:, ::-1], np.asfortranarray(w))):
        assert_close(conv_numpy._conv2d_nhwc(xl, wl, (1, 1), (1, 1), pads), want, np.float64)


@pytest.mark.parametrize("c", [31, 32, 33, 64])
@pytest.mark.parametrize("n, hw", [(1, (15, 15)), (1, (16, 16)), (2, (11, 12))])
def test_default_thresholds_choose_and_agree_with_im2col(used, monkeypatch, c, n, hw):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, *hw, c)).astype(np.float32)
    w = (rng.standard_normal((3, 3, c, 8)) / np.sqrt(9 * c)).astype(np.float32)
    pads = ((1, 1), (1, 1))
    got = conv_numpy._conv2d_nhwc(x, w, (1, 1), (1, 1), pads)
    tiles = n * -(-hw[0] // 2) * -(-hw[1] // 2)
    expect = c >= conv_numpy._WINOGRAD_MIN_CHANNELS and tiles >= conv_numpy._WINOGRAD_MIN_TILES
    assert bool(used) == expect
    monkeypatch.setattr(conv_numpy, "_WINOGRAD_MIN_CHANNELS", 1 << 30)
    im2col = conv_numpy._conv2d_nhwc(x, w, (1, 1), (1, 1), pads)
    assert len(used) == int(expect)
    np.testing.assert_allclose(got, im2col, rtol=1e-4, atol=1e-5 * np.abs(im2col).max())
    assert_close(got, reference_conv3x3(x, w, pads), np.float32)


@pytest.mark.parametrize(
    "khw, strides, dilations", [((3, 3), (2, 2), (1, 1)), ((3, 3), (1, 1), (2, 2)), ((3, 2), (1, 1), (1, 1))]
)
def test_other_convolutions_keep_their_kernels(always_winograd, used, khw, strides, dilations):
    x = np.ones((2, 9, 9, 4))
    conv_numpy._conv2d_nhwc(x, np.ones((*khw, 4, 3)), strides, dilations, ((1, 1), (1, 1)))
    assert not used


def test_the_image_benchmark_layers_use_it_except_the_rgb_one():
    shapes = [((32, 96, 96, 3), 32), ((32, 48, 48, 32), 64), ((32, 24, 24, 64), 96), ((32, 12, 12, 96), 128)]
    chosen = [
        conv_numpy._use_winograd(np.empty(xs, np.float32), (3, 3), (1, 1), (1, 1), xs[1:3]) for xs, _ in shapes
    ]
    assert chosen == [False, True, True, True]


def test_scratch_buffers_do_not_leak_between_calls(always_winograd):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 7, 6, 5)).astype(np.float32)
    w = rng.standard_normal((3, 3, 5, 4)).astype(np.float32)
    pads = ((1, 1), (1, 1))
    first = conv_numpy._conv2d_nhwc(x, w, (1, 1), (1, 1), pads)
    conv_numpy._conv2d_nhwc(3 * x[:1], w, (1, 1), (1, 1), ((0, 0), (0, 0)))  # reuses the buffers
    np.testing.assert_array_equal(first, conv_numpy._conv2d_nhwc(x, w, (1, 1), (1, 1), pads))


def test_op_and_gradients_through_the_graph(monkeypatch, used):
    """Conv2D's forward takes Winograd; its input and filter gradients are the same numbers as before."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 8, 8, 32)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 32, 16)) / 17).astype(np.float32)
    g = hk.Graph()
    with g.as_default():
        xt = hk.placeholder(hk.float32, [None, 8, 8, 32])
        wt = hk.constant(w)
        y = hk.nn.conv2d(xt, wt, padding="SAME")
        loss = hk.reduce_sum(y * hk.constant(rng.standard_normal((4, 8, 8, 16)).astype(np.float32)))
        grads = hk.gradients(loss, [xt, wt])
    sess = hk.Session(g)
    fetched = sess.run([y, *grads], {xt: x})
    assert used
    monkeypatch.setattr(conv_numpy, "_WINOGRAD_MIN_CHANNELS", 1 << 30)
    baseline = sess.run([y, *grads], {xt: x})
    assert_close(fetched[0], reference_conv3x3(x, w, ((1, 1), (1, 1))), np.float32)
    np.testing.assert_allclose(fetched[0], baseline[0], rtol=1e-4, atol=1e-5 * np.abs(baseline[0]).max())
    for got, want in zip(fetched[1:], baseline[1:]):  # a linear loss: the gradients do not read y
        np.testing.assert_array_equal(got, want)
