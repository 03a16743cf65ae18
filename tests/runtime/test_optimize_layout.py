"""Channels-last regions (``hubkit/runtime/optimize_layout.py``) compute what the channels-first plan computes.

Random ONNX-style CNNs (fire modules, residual blocks with batch norms, dense blocks, max and average
pools with padding and ceil mode, a spatial mean) are compiled with the NHWC regions and without them
(``HUBKIT_OPTIMIZE_LAYOUT=0``, everything else the same) and run on the same inputs, with the NumPy and
the Numba kernels. Convolutions sum in another order channels-last, so values agree within a float
tolerance; the plan's structure (where values enter and leave a region) is checked exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops import _packed_gemm
from hubkit.ops.registry import apply
from hubkit.runtime.executor import compile_plan
from hubkit.runtime.optimize import describe_plan
from hubkit.runtime.optimize_layout import NhwcConcat, NhwcConv, NhwcMean, NhwcPool, ToNchw, ToNhwc


def _plans(graph, fetches, feeds, monkeypatch):
    """``(channels-first, channels-last)`` optimised plans of the same graph."""
    monkeypatch.setenv("HUBKIT_OPTIMIZE_LAYOUT", "0")
    nchw = compile_plan(graph, fetches, feeds)
    monkeypatch.delenv("HUBKIT_OPTIMIZE_LAYOUT")
    return nchw, compile_plan(graph, fetches, feeds)


def _kinds(plan) -> list[type]:
    return [type(step.fn) for step in plan.steps]


class _Net:
    """Builds ONNX-op CNN layers on an NCHW value, with random weights of one dtype."""

    def __init__(self, rng, dtype) -> None:
        self.rng, self.dtype, self.count = rng, dtype, 0

    def var(self, shape, scale=1.0):
        self.count += 1
        value = (self.rng.standard_normal(shape) * scale).astype(self.dtype)
        return hk.Variable(value, name=f"v{self.count}", dtype=self.dtype)

    def conv(self, h, m, k, stride=1, pads=None, bias=True, relu=True):
        c = h.shape[1]
        ins = [h, self.var((m, c, k, k), 1 / np.sqrt(c * k * k))]
        if bias:
            ins.append(self.var((m,), 0.1))
        pads = [k // 2] * 4 if pads is None else pads
        y = apply("OnnxConv", *ins, strides=[stride, stride], dilations=[1, 1], pads=pads, auto_pad="NOTSET", group=1)
        return hk.nn.relu(y) if relu else y

    def bn(self, h, relu=True):
        m = h.shape[1]
        scale = hk.reshape(hk.constant(self.rng.uniform(0.5, 1.5, m).astype(self.dtype)), [-1, 1, 1])
        shift = hk.reshape(hk.constant((self.rng.standard_normal(m) * 0.1).astype(self.dtype)), [-1, 1, 1])
        y = hk.add(hk.multiply(h, scale), shift)
        return hk.nn.relu(y) if relu else y

    def fire(self, h, squeeze, expand):
        s = self.conv(h, squeeze, 1, pads=[0, 0, 0, 0])
        return hk.concat([self.conv(s, expand, 1, pads=[0, 0, 0, 0]), self.conv(s, expand, 3)], axis=1)

    def residual(self, h):
        """A bottleneck with an identity shortcut, then one with a projection (ResNet's two kinds)."""
        m = h.shape[1]
        y = self.bn(self.conv(self.conv(h, 8, 1, pads=[0, 0, 0, 0]), m, 3, bias=False, relu=False), relu=False)
        h = hk.nn.relu(hk.add(y, h))
        shortcut = self.bn(self.conv(h, 32, 1, pads=[0, 0, 0, 0], bias=False, relu=False), relu=False)
        y = self.bn(self.conv(self.conv(h, 8, 3), 32, 1, pads=[0, 0, 0, 0], bias=False, relu=False), relu=False)
        return hk.nn.relu(hk.add(shortcut, y))

    def dense(self, h, growth):
        return hk.concat([h, self.conv(self.bn(h), growth, 3, bias=False, relu=False)], axis=1)

    def max_pool(self, h, ceil):
        return apply("OnnxMaxPool", h, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1] if not ceil else [0] * 4,
                     ceil_mode=ceil)

    def avg_pool(self, h, include_pad):
        return apply("OnnxAveragePool", h, kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 0, 0],
                     count_include_pad=include_pad)


def _random_cnn(seed: int, dtype, size: int = 19):
    """A random CNN of the four model families' layer kinds; returns ``(graph, input, output, intermediate)``."""
    rng = np.random.default_rng(seed)
    g = hk.Graph()
    with g.as_default():
        net = _Net(rng, dtype)
        x = hk.placeholder(dtype, [None, 3, size, size], name="x")
        h = net.conv(x, 16, 3, stride=2, pads=[1, 1, 1, 1])
        middle = None
        for k in rng.permutation(6):
            if k == 0:
                h = net.fire(h, 8, 12)
            elif k == 1:
                h = net.residual(h)
            elif k == 2:
                h = net.dense(h, 8)
            elif k == 3:
                h = net.max_pool(h, bool(rng.integers(2)))
            elif k == 4:
                h = net.conv(h, 24, 1, pads=[0, 0, 0, 0])
                middle = h
            else:
                h = net.avg_pool(h, bool(rng.integers(2)))
        y = hk.reduce_mean(h, axis=[2, 3], keepdims=True)
    return g, x, y, middle


def _close(got, want, dtype):
    tol = 2e-5 if dtype == np.float32 else 1e-12
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blas_threads", [1, 2])  # 1: float32 convolutions on the tile GEMM (AVX-512 hosts)
def test_random_cnns_match_the_channels_first_plan(kernels, monkeypatch, seed, dtype, blas_threads):
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: blas_threads)
    g, x, y, _ = _random_cnn(seed, dtype)
    nchw, nhwc = _plans(g, [y], [x], monkeypatch)
    kinds = _kinds(nhwc)
    assert ToNhwc in kinds and NhwcConv in kinds and NhwcConcat in kinds and NhwcPool in kinds, describe_plan(nhwc)
    assert kinds.count(ToNhwc) == 1 and ToNchw not in kinds, describe_plan(nhwc)  # in once; out through the mean
    assert NhwcMean in kinds and ToNhwc not in _kinds(nchw)
    # both shortcuts are read last by the convolution they are added to: it writes into their memory
    assert sum(getattr(step.fn, "donate", False) for step in nhwc.steps) == 2, describe_plan(nhwc)
    rng = np.random.default_rng(seed)
    for batch in (1, 3):
        xv = rng.standard_normal((batch, 3, 19, 19)).astype(dtype)
        for _ in range(2):  # the second run reuses recycled buffers and the fold step's cache
            want = nchw.run([xv])[0]
            got = nhwc.run([xv])[0]
            assert got.shape == want.shape == (batch, y.shape[1], 1, 1) and got.dtype == want.dtype
            _close(got, want, dtype)


@pytest.mark.parametrize(("threads", "tile_host", "held"), [(2, True, True), (1, True, False), (2, False, False)])
def test_a_channels_last_plan_holds_the_blas_at_one_thread(monkeypatch, threads, tile_host, held):
    """Its convolutions split over hubkit's worker: OpenBLAS stays at one thread while it runs, with 2+ threads
    on a tile host only; a channels-first plan never holds it."""
    import contextlib

    g, x, y, _ = _random_cnn(1, np.float32)
    nchw, nhwc = _plans(g, [y], [x], monkeypatch)
    assert nhwc.hold_blas and not nchw.hold_blas
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: threads)
    monkeypatch.setattr(_packed_gemm, "_tile_host", lambda: tile_host)
    seen = []

    @contextlib.contextmanager
    def hold():
        seen.append("in")
        yield

    monkeypatch.setattr(_packed_gemm, "blas_one_thread", hold)
    xv = np.random.default_rng(1).standard_normal((1, 3, 19, 19)).astype(np.float32)
    _close(nhwc.run([xv])[0], nchw.run([xv])[0], np.float32)
    assert seen == (["in"] if held else [])


def test_a_fetched_value_inside_a_region_leaves_it_channels_first(kernels, monkeypatch):
    g, x, y, middle = _random_cnn(3, np.float32)
    nchw, nhwc = _plans(g, [y, middle], [x], monkeypatch)
    assert _kinds(nhwc).count(ToNchw) == 1, describe_plan(nhwc)
    xv = np.random.default_rng(0).standard_normal((2, 3, 19, 19)).astype(np.float32)
    for got, want in zip(nhwc.run([xv]), nchw.run([xv])):
        assert got.shape == want.shape and got.flags.c_contiguous
        _close(got, want, np.float32)


def test_a_value_read_outside_the_region_is_converted_back_once(kernels, monkeypatch):
    rng = np.random.default_rng(5)
    g = hk.Graph()
    with g.as_default():
        net = _Net(rng, np.float32)
        x = hk.placeholder(hk.float32, [None, 8, 9, 9], name="x")
        a = net.conv(x, 16, 3)
        b = net.conv(a, 16, 3)
        out = hk.add(hk.sigmoid(a), hk.tanh(a))  # two readers with no channels-last form
        y = hk.concat([b, out], axis=1)
    nchw, nhwc = _plans(g, [y], [x], monkeypatch)
    kinds = _kinds(nhwc)
    # x and `out` come in; `a` goes out once for both of its readers, and so does the fetched result
    assert kinds.count(ToNhwc) == 2 and kinds.count(ToNchw) == 2, describe_plan(nhwc)
    xv = rng.standard_normal((2, 8, 9, 9)).astype(np.float32)
    _close(nhwc.run([xv])[0], nchw.run([xv])[0], np.float32)


def test_a_lone_convolution_stays_channels_first(monkeypatch):
    rng = np.random.default_rng(6)
    g = hk.Graph()
    with g.as_default():
        net = _Net(rng, np.float32)
        x = hk.placeholder(hk.float32, [None, 8, 9, 9], name="x")
        y = net.max_pool(net.conv(x, 16, 3), False)
    _, nhwc = _plans(g, [y], [x], monkeypatch)
    assert not {ToNhwc, NhwcConv, NhwcPool} & set(_kinds(nhwc)), describe_plan(nhwc)


def test_the_switch_turns_the_rewrite_off(monkeypatch):
    g, x, y, _ = _random_cnn(0, np.float32)
    nchw, nhwc = _plans(g, [y], [x], monkeypatch)
    assert not {ToNhwc, NhwcConv, NhwcPool, NhwcMean} & set(_kinds(nchw))
    assert "(NHWC)" in describe_plan(nhwc) and "(NHWC)" not in describe_plan(nchw)


@pytest.mark.parametrize("kernel", [ToNhwc(), ToNchw(), NhwcMean()])
@pytest.mark.parametrize("value", [np.zeros((2, 3, 4), np.float32), 1.5, np.zeros((1, 2, 3, 4, 5), np.float32)])
def test_layout_steps_refuse_values_that_are_not_4d(kernel, value):
    with pytest.raises(ValueError, match="needs a 4-D array"):
        kernel(value)


@pytest.mark.skipif(not _packed_gemm.available(), reason="the LLVM tile kernel does not compile here")
@pytest.mark.parametrize("threads", [1, 2])
def test_a_fire_module_runs_as_one_job_on_two_threads_with_the_same_bits(monkeypatch, threads):
    """On two threads a concatenation of convolutions of one input runs its parts as one prepared job
    (hubkit/ops/conv_nhwc_concat.py) from its second call, and a lone convolution as a job of one part: the bits of
    the parts run one by one by their own prepared calls."""
    from hubkit.ops import _worker_pool, conv_nhwc_concat

    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: threads)
    rng = np.random.default_rng(4)
    g = hk.Graph()
    with g.as_default():
        net = _Net(rng, np.float32)
        x = hk.placeholder(hk.float32, [1, 16, 13, 13], name="x")
        y = net.conv(net.fire(x, 16, 64), 8, 1, pads=[0, 0, 0, 0])
    plans = [_plans(g, [y], [x], monkeypatch)[1] for _ in range(2)]
    (concat,) = [step.fn for step in plans[0].steps if isinstance(step.fn, NhwcConcat)]
    xv = rng.standard_normal((1, 16, 13, 13)).astype(np.float32)
    got = [plans[0].run([xv])[0] for _ in range(3)]
    job = isinstance(concat._fast[1], conv_nhwc_concat.ConcatCall)
    assert job == (threads == 2 and _worker_pool.available())
    lone = [step.fn._fast[2] for step in plans[0].steps if isinstance(step.fn, NhwcConv)]
    assert len(lone) == 2 and all(isinstance(j, conv_nhwc_concat.ConcatCall) == job for j in lone)
    parts = [fn._fast[2] for fn, _ in concat.parts]  # called into a slice only: no job prepared for them
    assert parts == [False, False] if threads == 2 else parts == [None, None]
    monkeypatch.setattr(conv_nhwc_concat, "prepare", lambda *args: None)
    want = plans[1].run([xv])[0]
    assert all(v.tobytes() == want.tobytes() for v in got)


def test_a_dense_block_grows_one_buffer_in_place(kernels, monkeypatch):
    rng = np.random.default_rng(8)
    g = hk.Graph()
    with g.as_default():
        net = _Net(rng, np.float32)
        x = hk.placeholder(hk.float32, [None, 8, 9, 9], name="x")
        h = net.conv(x, 16, 3)
        layers = []
        for _ in range(3):
            h = net.dense(h, 8)
            layers.append(h)
        y = net.conv(net.bn(h), 12, 1, pads=[0, 0, 0, 0])
    nchw, nhwc = _plans(g, [y, layers[1]], [x], monkeypatch)
    concats = [step.fn for step in nhwc.steps if isinstance(step.fn, NhwcConcat)]
    assert [(c.reserve, c.extends) for c in concats] == [(40, False), (0, True), (0, True)], describe_plan(nhwc)
    xv = rng.standard_normal((2, 8, 9, 9)).astype(np.float32)
    for _ in range(2):
        for got, want in zip(nhwc.run([xv]), nchw.run([xv])):
            _close(got, want, np.float32)


def test_every_member_of_a_chain_grows_the_first_buffer():
    from hubkit.runtime.optimize_layout import _grown

    first = np.zeros((2, 3, 3, 40), np.float32)[..., :8]
    views = [first]
    for channels in range(16, 41, 8):
        grown = _grown(views[-1], channels)
        assert grown is not None and grown.shape[3] == channels, channels
        views.append(grown)
    assert all(np.shares_memory(v, views[0].base) for v in views)
    views[-1][..., 32:] = 5
    assert (views[0].base[..., 32:] == 5).all() and (views[0].base[..., :32] == 0).all()


def test_a_value_without_room_is_not_grown():
    from hubkit.runtime.optimize_layout import _grown

    wide = np.arange(2 * 3 * 3 * 10, dtype=np.float32).reshape(2, 3, 3, 10)
    grown = _grown(wide[..., :4], 7)
    assert grown is not None and grown.shape == (2, 3, 3, 7) and np.shares_memory(grown, wide)
    np.testing.assert_array_equal(grown, wide[..., :7])
    assert _grown(wide[..., :4], 11) is None  # past the rows' end
    assert _grown(np.ascontiguousarray(wide[..., :4]), 5) is None  # a whole array: no room
    assert _grown(wide[:1, :, :, :4], 10) is not None and _grown(wide[1:, :2, :, :4], 10) is None  # not whole rows
    read_only = wide[..., :4]
    read_only.flags.writeable = False
    assert _grown(read_only, 5) is None
    assert _grown(np.float32(1.0), 2) is None
