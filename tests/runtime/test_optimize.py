"""The plan optimiser: every rewrite gives exactly the unoptimised plan's values, on random graphs."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.errors import OpError
from hubkit.ops import conv_fused
from hubkit.runtime.optimize import (
    FusedLinear,
    describe_plan,
    describe_signature_plan,
    optimize_enabled,
    set_optimize_enabled,
)
from tests.helpers_plans import blas_sums_by_row, plain_and_optimised

_plans = plain_and_optimised  # the `kernels` fixture (NumPy and Numba runs) is the suite-wide one


def _special(rng, shape, dtype, nans=True):
    """Random values with a few NaNs, zeros of both signs, and values around the ReLU6 cap."""
    x = rng.standard_normal(shape).astype(dtype) * 4
    flat = x.reshape(-1)
    k = max(1, flat.size // 50)
    idx = rng.choice(flat.size, size=4 * k, replace=flat.size < 4 * k)
    flat[idx[:k]] = np.nan if nans else 1.0
    flat[idx[k : 2 * k]] = -0.0
    flat[idx[2 * k : 3 * k]] = 0.0
    flat[idx[3 * k :]] = 6.0
    return x


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    # Bit for bit: -0.0 and 0.0 differ, NaNs compare equal.
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8)) or np.array_equal(a, b, equal_nan=True)
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


def _random_dense_graph(rng, dtype):
    """A chain of dense layers with random bias kinds, activations, transposes, identities and extra readers."""
    g = hk.Graph()
    fetches, expect_fused = [], 0
    with g.as_default():
        width = int(rng.integers(2, 9))
        x = hk.placeholder(dtype, [None, width], name="x")
        h = x
        for layer in range(int(rng.integers(1, 4))):
            out = int(rng.integers(1, 9))
            transpose_b = bool(rng.integers(2))
            w_value = rng.standard_normal((out, width) if transpose_b else (width, out)).astype(dtype)
            w = hk.Variable(w_value, name=f"w{layer}", dtype=dtype)
            if rng.integers(2):
                w = hk.identity(w)
            z = hk.matmul(h, w, transpose_b=transpose_b)
            bias_kind = ["bias_add", "add", "add_first", None][int(rng.integers(4))]
            b = hk.Variable(rng.standard_normal(out).astype(dtype), name=f"b{layer}", dtype=dtype)
            if bias_kind == "bias_add":
                z = hk.nn.bias_add(z, b)
            elif bias_kind == "add":
                z = z + b
            elif bias_kind == "add_first":
                z = b + z
            act = [hk.nn.relu, hk.nn.relu6, None][int(rng.integers(3))]
            if act is not None:
                z = act(z)
            if rng.integers(4) == 0:
                fetches.append(z)  # an intermediate fetched too: it must still be there
            elif bias_kind or act:
                expect_fused += 1
            if rng.integers(3) == 0:
                z = hk.identity(z)
            h, width = z, out
        fetches.append(h * 2.0 if rng.integers(2) else h)
    return g, x, fetches, expect_fused


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_dense_graphs_equal_unoptimised(seed, dtype, kernels):
    rng = np.random.default_rng(seed)
    g, x, fetches, expect_fused = _random_dense_graph(rng, dtype)
    plain, optimised = _plans(g, fetches, [x])
    fused = [s for s in optimised.steps if isinstance(s[0], FusedLinear)]
    assert len(fused) >= expect_fused
    assert optimised.unfused is not None or not (fused or len(optimised.steps) < len(plain.steps))
    for batch in (1, 3, 700):  # 700 x 8 reaches the Numba kernels' sizes
        value = _special(rng, (batch, x.shape[1]), dtype)
        for a, b in zip(plain.run([value]), optimised.run([value])):
            _same(a, b)


@pytest.mark.parametrize("f43", [False, True])
@pytest.mark.parametrize("seed", range(8))
def test_random_conv_graphs_equal_unoptimised(seed, f43, kernels, monkeypatch):
    """Bit for bit, except with Winograd F(4x4, 3x3) and the direct few-channel kernel (Numba only, each
    summing in its own order), and where the BLAS sums a row in an order that depends on how many rows a
    call has (the fused step multiplies its pixels in other chunks than the plain convolution): then
    within a tolerance."""
    if seed % 2:  # pool one image at a time: every chunk boundary is crossed
        monkeypatch.setattr(conv_fused, "_POOL_CHUNK_BYTES", 1)
    if not f43:
        monkeypatch.setattr(conv_fused, "F43_MIN_CHANNELS", 1 << 30)
        monkeypatch.setattr(conv_fused, "SMALL_MAX_CHANNELS", 0)
    used = []
    real = conv_fused._winograd43.conv3x3_bias_act
    monkeypatch.setattr(conv_fused._winograd43, "conv3x3_bias_act", lambda *a: used.append(1) or real(*a))
    rng = np.random.default_rng(100 + seed)
    g = hk.Graph()
    with g.as_default():
        c = int(rng.choice([3, 8, 32]))
        x = hk.placeholder(hk.float32, [None, None, None, c], name="x")
        h = x
        for layer in range(2):
            k = int(rng.choice([1, 3]))
            o = int(rng.choice([4, 32]))
            stride = 1 if k == 3 and rng.integers(2) else int(rng.integers(1, 3))
            if layer == 0:
                first_layer_f43 = k == 3 and stride == 1 and c >= 8
            w = hk.Variable(rng.standard_normal((k, k, c, o)).astype(np.float32) / k, name=f"w{layer}")
            b = hk.Variable(rng.standard_normal(o).astype(np.float32), name=f"b{layer}")
            padding = ["SAME", "VALID"][int(rng.integers(2))]
            h = hk.nn.conv2d(h, w, strides=stride, padding=padding)
            h = [hk.nn.relu, hk.nn.relu6][int(rng.integers(2))](hk.nn.bias_add(h, b))
            if rng.integers(2):  # pooled chunk by chunk inside the fused step
                h = hk.nn.max_pool2d(h, ksize=int(rng.integers(1, 4)), strides=2, padding="SAME")
            c = o
        y = hk.reduce_sum(h, axis=[1, 2])
    plain, optimised = _plans(g, [h, y][int(rng.integers(2)) :], [x])
    assert any(isinstance(s[0], FusedLinear) for s in optimised.steps)
    exact = blas_sums_by_row()
    for n, size in ((1, 13), (2, 16), (12, 20)):  # 12 x 20 x 20 reaches both Winograds' tile counts
        for nans in (False, True):
            value = _special(rng, (n, size, size, x.shape[3]), np.float32, nans)
            for a, b in zip(plain.run([value]), optimised.run([value])):
                if f43 and kernels == "numba":  # Winograd spreads a NaN over its tile's outputs
                    assert np.isnan(b)[np.isnan(a)].all()
                    a, b = np.where(np.isnan(b), 0, a), np.where(np.isnan(b), 0, b)
                    np.testing.assert_allclose(
                        b, a, rtol=1e-4, atol=5e-5 * float(np.nanmax(np.abs(a), initial=1.0))  # F(4x4): ~1e-4 at 6
                    )
                elif exact:
                    _same(a, b)
                else:  # every output a float32 sum over at most 3 * 3 * 32 products, in another order
                    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
                    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * float(np.nanmax(np.abs(a), initial=1.0)))
    if not (f43 and kernels == "numba"):
        assert not used
    elif first_layer_f43:  # 12 images of 20x20: 300 tiles
        assert used


def test_no_fusion_across_other_readers_or_fetches():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        w = hk.constant(np.ones((3, 3), np.float32))
        z = hk.matmul(x, w)
        y = hk.nn.relu(z)
        other = z * 3.0  # z has a second reader: matmul and relu stay apart
    _, optimised = _plans(g, [y, other], [x])
    assert not any(isinstance(s[0], FusedLinear) for s in optimised.steps)
    _, optimised = _plans(g, [y, z], [x])  # z fetched
    assert not any(isinstance(s[0], FusedLinear) for s in optimised.steps)


def test_intermediates_still_seen():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 2], name="x")
        y = hk.layers.dense(x, 2, activation="relu", name="d")
        out = hk.identity(y, name="out")
    sess = hk.Session(g)
    value, inter = sess.run_with_intermediates(out, {x: np.ones((1, 2), np.float32)})
    assert {"d/MatMul:0", "d/BiasAdd:0", "d/Relu:0", "out:0"} <= set(inter)
    np.testing.assert_array_equal(inter["out:0"], value)


def test_bias_of_the_wrong_length_at_run_time_names_the_node():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 2])
        b = hk.placeholder(hk.float32, [None])
        y = hk.nn.relu(
            hk.nn.bias_add(hk.matmul(x, hk.constant(np.ones((2, 3), np.float32))), b, name="my_bias")
        )
    sess = hk.Session(g)
    assert any(isinstance(s[0], FusedLinear) for s in sess.plan([y], [x, b]).steps)
    with pytest.raises(OpError, match="my_bias"):
        sess.run(y, {x: np.ones((1, 2)), b: np.ones(4)})


def test_switch_and_description():
    assert optimize_enabled()
    assert not set_optimize_enabled(False)
    assert set_optimize_enabled(None)

    def module_fn():
        x = hk.placeholder(hk.float32, [None, 4], name="x")
        h = hk.layers.dense(x, 3, activation="relu6", name="a")
        hk.add_signature(inputs=x, outputs={"default": hk.layers.dense(hk.identity(h), 2, name="b"), "h": h})

    m = hk.Module(hk.create_module_spec(module_fn))
    text = describe_signature_plan(m)
    assert "signature 'default': inputs ['x:0']" in text
    assert "MatMul+BiasAdd+Relu6  (x:0, a/kernel:0, a/bias:0) -> a/Relu6:0" in text
    assert "MatMul+BiasAdd  (a/Relu6:0, b/kernel:0, b/bias:0) -> b/BiasAdd:0" in text
    assert "Identity" not in text.split("\n", 2)[2]
    with pytest.raises(hk.SignatureError):
        describe_signature_plan(m, "nope")
    plan = hk.Session(m._graph).plan([m._graph.get_tensor("a/Relu6:0")], [m._graph.get_tensor("x:0")])
    assert "feed:0" in describe_plan(plan)


def test_a_fused_dense_step_runs_its_prepared_call_from_the_second_call(monkeypatch):
    """FusedLinear prepares its tile-GEMM call after dense() ran it, and later calls of the same shape take it (dense's
    bits); another shape goes through dense() again and is prepared anew."""
    from hubkit.ops import _packed_gemm

    if not (_packed_gemm.available() and _packed_gemm._tile_host()):
        pytest.skip("the tile GEMM does not run here")
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)
    rng = np.random.default_rng(4)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 96], name="x")
        w = hk.constant(rng.standard_normal((96, 80)).astype(np.float32))
        b = hk.constant(rng.standard_normal(80).astype(np.float32))
        y = hk.nn.relu(hk.nn.bias_add(hk.matmul(x, w), b))
    plain, optimised = _plans(g, [y], [x])
    (step,) = [s[0] for s in optimised.steps if isinstance(s[0], FusedLinear)]
    calls = []
    run = _packed_gemm.dense
    monkeypatch.setattr(_packed_gemm, "dense", lambda *a: calls.append(1) or run(*a))
    import hubkit.runtime.optimize as optimize_mod

    monkeypatch.setattr(optimize_mod, "dense", _packed_gemm.dense)
    for rows, dense_calls in ((64, 1), (40, 2)):  # the steps themselves (Plan.run would take the dense chain)
        value = rng.standard_normal((rows, 96)).astype(np.float32)
        first = optimised.run_steps([value])[0]  # dense() (the tile GEMM: another summation order than np.matmul)
        np.testing.assert_allclose(first, plain.run([value])[0], rtol=1e-4, atol=1e-4)
        for _ in range(2):
            assert optimised.run_steps([value])[0].tobytes() == first.tobytes()
        assert len(calls) == dense_calls and step._dense is not None and step._dense.shape == (rows, 96)
