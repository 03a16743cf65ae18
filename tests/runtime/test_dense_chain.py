"""The dense-chain path (runtime/dense_chain.py): a plan of fused dense layers at 1-2 rows gives the
unoptimised plan's values bit for bit, and falls back to the plan whenever it cannot run."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops._epilogue import NONE, RELU, RELU6
from hubkit.runtime.dense_chain import DenseChain
from hubkit.runtime.optimize import describe_plan, set_optimize_enabled
from tests.helpers_plans import assert_loop_bits, depth_loop_reference, plain_and_optimised
from tests.helpers_threads import from_threads


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()  # bit for bit: -0.0 against 0.0 and NaN payloads included


def _special(rng, shape, dtype):
    """Random values with a NaN, zeros of both signs and values at the ReLU6 cap."""
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.integers(flat.size)] = -0.0
    flat[rng.integers(flat.size)] = 6.0
    if flat.size > 8:
        flat[rng.integers(flat.size)] = np.nan
    return x


def _mlp_spec(sizes=(20, 16, 12, 3), dtype=hk.float32, seed=0, acts=("relu", "relu6", None), bias=(True,) * 3,
              const_first=False):
    rng = np.random.default_rng(seed)

    def module_fn():
        x = hk.placeholder(dtype, [None, sizes[0]], name="x")
        h = x
        for i in range(len(sizes) - 1):
            value = rng.standard_normal((sizes[i], sizes[i + 1])).astype(dtype.np_dtype)
            w = hk.constant(value) if const_first and i == 0 else hk.Variable(value, name=f"w{i}", dtype=dtype)
            h = hk.matmul(h, w)
            if bias[i]:
                h = hk.nn.bias_add(h, hk.Variable(rng.standard_normal(sizes[i + 1]).astype(dtype.np_dtype),
                                                  name=f"b{i}", dtype=dtype))
            if acts[i] == "relu":
                h = hk.nn.relu(h)
            elif acts[i] == "relu6":
                h = hk.nn.relu6(h)
        hk.add_signature(inputs=x, outputs=h)

    return hk.create_module_spec(module_fn)


def _unoptimised(spec):
    set_optimize_enabled(False)
    try:
        m = hk.Module(spec)
        m(np.zeros((1, m.get_input_info_dict()["default"].shape[1]), m.get_input_info_dict()["default"].dtype.np_dtype))
    finally:
        set_optimize_enabled(None)
    return m


def _from_four_threads(rounds, inputs, check):
    """``check(i)`` for each of ``inputs``' indices, ``rounds`` times over, from 4 threads at once (each starting
    at another index)."""

    def work(k):
        for _ in range(rounds):
            for i in range(k, k + len(inputs)):
                check(i % len(inputs))

    from_threads(work)


def _counting(monkeypatch, only=None):
    """Records, per call of a chain (or only of the chain ``only``), whether it ran instead of the plan."""
    ran = []
    original = DenseChain.__call__

    def counted(self, x):
        out = original(self, x)
        if only is None or self is only:
            ran.append(out is not None)
        return out

    monkeypatch.setattr(DenseChain, "__call__", counted)
    return ran


@pytest.mark.parametrize("dtype", [hk.float32, hk.float64])
@pytest.mark.parametrize(
    "acts, bias, const_first",
    [(("relu", "relu6", None), (True, True, True), False), ((None, "relu", "relu"), (False, True, False), True)],
)
def test_module_call_equals_unoptimised_plan(dtype, acts, bias, const_first, kernels, monkeypatch):
    spec = _mlp_spec(dtype=dtype, acts=acts, bias=bias, const_first=const_first)
    m, plain = hk.Module(spec), _unoptimised(spec)
    ran = _counting(monkeypatch)
    rng = np.random.default_rng(1)
    # Shapes change between calls (1 and 2 rows take the chain, 3 and more the plan), as does contiguity.
    for rows in (1, 2, 1, 5, 2, 1, 64, 1):
        x = _special(rng, (rows, 20), dtype.np_dtype)
        for _ in range(2):  # the second call takes Module.__call__'s cached fast path
            _same(m(x), plain(x))
        strided = _special(rng, (rows, 40), dtype.np_dtype)[:, ::2]  # not contiguous: the plan runs
        _same(m(strided), plain(strided))
        _same(m(x[:, None, :][:, 0]), plain(x))  # a contiguous view
    assert m._variant is not None and m._plans[("default", False)][0].dense is not None
    assert sum(ran) >= 12 and not all(ran)


def test_session_run_takes_it_and_intermediates_still_seen(monkeypatch):
    spec = _mlp_spec()
    m = hk.Module(spec)
    sess = hk.Session(m._graph)
    sig = m._variant.signature(None)
    x_t, y_t = m._eager_tensors[sig.inputs["default"].name], m._eager_tensors[sig.outputs["default"].name]
    ran = _counting(monkeypatch)
    x = np.random.default_rng(2).standard_normal((1, 20)).astype(np.float32)
    plain, optimised = plain_and_optimised(m._graph, [y_t], [x_t])
    assert plain.dense is None and optimised.dense is not None
    expected = plain.run([x])[0]
    _same(sess.run(y_t, {x_t: x}), expected)
    assert ran == [True]
    out, inter = sess.run_with_intermediates(y_t, {x_t: x})
    _same(out, expected)
    assert len(inter) > 6 and ran == [True]  # the unfused plan ran, every intermediate is there


def test_variables_changed_between_calls(monkeypatch):
    m = hk.Module(_mlp_spec())
    x = np.random.default_rng(3).standard_normal((1, 20)).astype(np.float32)
    first = m(x)
    ran = _counting(monkeypatch, only=m._plans[("default", False)][0].dense)
    w0 = m.variable_map["w0"]
    w0.assign(w0.value * 2)  # in place: the same array, new values
    expected = hk.Module(_mlp_spec())
    expected.variable_map["w0"].assign(w0.value)
    _same(m(x), expected(x))
    assert not np.array_equal(m(x), first)
    w0._value = np.asfortranarray(w0.value)  # a new array, not C-contiguous: the plan runs
    expected.variable_map["w0"]._value = w0._value  # (whose BLAS call differs for it: compare like with like)
    _same(m(x), expected(x))
    w0._value = np.ascontiguousarray(w0.value)  # a new array again: checked, then the chain runs
    expected.variable_map["w0"]._value = w0._value
    _same(m(x), expected(x))
    assert ran == [True, True, False, True]  # a new C-contiguous array is checked, then run


def test_lazily_initialised_variables(monkeypatch):
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 6], name="x")
        hk.add_signature(inputs=x, outputs=hk.layers.dense(hk.layers.dense(x, 5, activation="relu"), 4))

    spec = hk.create_module_spec(module_fn)
    x = np.random.default_rng(4).standard_normal((2, 6)).astype(np.float32)
    m = hk.Module(spec)
    ran = _counting(monkeypatch)
    assert not m.variables[0].is_initialized
    first = m(x)  # the variables are not initialised yet: the plan runs, reading them through Variable.value
    assert ran == [False]
    _same(m(x), first)
    assert ran == [False, True]


def test_plans_that_are_not_chains():
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 4], name="x")
        w = hk.Variable(np.ones((3, 4), np.float32), name="w")
        h = hk.nn.relu(hk.matmul(x, w, transpose_b=True))
        hk.add_signature(inputs=x, outputs=h)
        hk.add_signature("twice", inputs=x, outputs=h * 2.0)
        v = hk.Variable(np.arange(8, dtype=np.float32).reshape(4, 2), name="v")
        hk.add_signature("plain", inputs=x, outputs=hk.matmul(x, v))
        hk.add_signature("shifted", inputs=x, outputs=hk.matmul(x, v) + 1.0)
        hk.add_signature("two_out", inputs=x, outputs={"default": hk.matmul(x, v), "h": h})

    m = hk.Module(hk.create_module_spec(module_fn))
    x = np.ones((1, 4), np.float32)
    for name in ("default", "twice", "shifted"):
        m(x, signature=name)
        assert m._plans[(name, False)][0].dense is None
    m(x, signature="two_out", as_dict=True)
    assert m._plans[("two_out", True)][0].dense is None  # two fetches
    np.testing.assert_array_equal(m(x, signature="plain"), [[12.0, 16.0]])  # a bare MatMul is a chain of one
    assert m._plans[("plain", False)][0].dense is not None
    assert "dense_chain" in describe_plan(m._plans[("plain", False)][0])  # what `hubkit info --plan` shows
    assert "dense_chain" not in describe_plan(m._plans[("default", False)][0])


def test_concurrent_calls_get_their_own_results():
    spec = _mlp_spec(sizes=(64, 48, 48, 8))
    m, plain = hk.Module(spec), _unoptimised(spec)
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal((1 + i % 2, 64)).astype(np.float32) for i in range(8)]
    expected = [plain(x) for x in inputs]
    _from_four_threads(300, inputs, lambda i: np.testing.assert_array_equal(m(inputs[i]), expected[i]))


def test_outputs_are_fresh_arrays():
    m = hk.Module(_mlp_spec())
    x = np.ones((1, 20), np.float32)
    a = m(x)
    b = m(x)
    assert a is not b and not np.shares_memory(a, b)
    a[:] = 123.0
    assert not np.array_equal(m(x), a)


# The column split (hubkit/ops/_chain_cols.py): with 2+ BLAS threads a float32 chain of at least MIN_COLS_WORK
# weights runs at 1-2 rows split by columns between the caller and a native worker. Its outputs are a loop over
# the depth in float32 (tests/helpers_plans.py), bit for bit (NaN where it has NaN): another order than np.dot's.

_split_available = pytest.mark.skipif(
    not __import__("hubkit.ops._chain_cols", fromlist=["available"]).available(), reason="no worker pool here"
)


def _two_blas_threads(monkeypatch, n=2):
    """``n`` BLAS threads as the chain sees them."""
    from hubkit.runtime import dense_chain as dc

    monkeypatch.setattr(dc, "blas_threads", lambda: n)


def _split_counting(monkeypatch):
    from hubkit.ops import _chain_cols

    calls = []
    original = _chain_cols.run

    def counted(x, call, pool):
        calls.append(x.shape)
        return original(x, call, pool)

    monkeypatch.setattr(_chain_cols, "run", counted)
    return calls


def _module_layers(m, acts, bias):
    codes = {"relu": RELU, "relu6": RELU6, None: NONE}
    return [
        (m.variable_map[f"w{i}"].value, m.variable_map[f"b{i}"].value if bias[i] else None, codes[act])
        for i, act in enumerate(acts)
    ]


def _close(got, want, depth):
    eps = np.finfo(np.float32).eps
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want))
    # through ReLU layers the error of a layer's inputs carries to the next: a loose multiple of K * eps
    np.testing.assert_allclose(got, want, rtol=8 * depth * eps, atol=8 * depth * eps * max(1.0, np.nanmax(np.abs(want))))


@_split_available
@pytest.mark.parametrize("acts, bias", [(("relu", "relu6", None), (True, True, True)), ((None, "relu", None), (False, True, False))])
def test_split_chain_gives_the_depth_loop_bits(acts, bias, monkeypatch):
    spec = _mlp_spec(sizes=(784, 512, 512, 10), acts=acts, bias=bias)
    m, plain = hk.Module(spec), _unoptimised(spec)
    layers = _module_layers(m, acts, bias)
    _two_blas_threads(monkeypatch)
    calls = _split_counting(monkeypatch)
    rng = np.random.default_rng(11)
    for rows in (1, 2, 1, 5, 2):
        x = (rng.standard_normal((rows, 784)) * 0.1).astype(np.float32)
        for _ in range(3):
            got = m(x)
            if rows <= 2:
                _same(got, depth_loop_reference(x, layers))
            _close(got, plain(x), 784)
    assert calls == [(1, 784)] * 3 + [(2, 784)] * 3 + [(1, 784)] * 3 + [(2, 784)] * 3  # 5 rows: the small kernel


@_split_available
def test_one_blas_thread_keeps_the_bits(monkeypatch):
    spec = _mlp_spec(sizes=(784, 512, 512, 10))
    m, plain = hk.Module(spec), _unoptimised(spec)
    _two_blas_threads(monkeypatch, 1)
    calls = _split_counting(monkeypatch)
    x = np.random.default_rng(12).standard_normal((1, 784)).astype(np.float32)
    _same(m(x), plain(x))
    assert calls == []


@_split_available
def test_small_chains_and_a_busy_worker_run_unsplit(monkeypatch):
    from hubkit.ops import _worker_pool
    from hubkit.runtime import dense_chain as dc

    small = (64, 256, 256, 10)  # 82,432 weights
    assert dc.MIN_COLS_WORK > 64 * 256 + 256 * 256 + 256 * 10
    m, plain = hk.Module(_mlp_spec(sizes=small)), _unoptimised(_mlp_spec(sizes=small))
    _two_blas_threads(monkeypatch)
    calls = _split_counting(monkeypatch)
    x = np.random.default_rng(16).standard_normal((1, 64)).astype(np.float32)
    _same(m(x), plain(x))
    assert calls == []
    spec = _mlp_spec(sizes=(784, 512, 512, 10))
    m, plain = hk.Module(spec), _unoptimised(spec)
    x = np.random.default_rng(17).standard_normal((1, 784)).astype(np.float32)
    pool = _worker_pool.get_pool()
    assert pool.acquire()  # another caller holds the worker
    try:
        _same(m(x), plain(x))
    finally:
        pool.release()
    assert calls == []
    m(x)
    assert calls == [(1, 784)]


@_split_available
def test_split_chain_packs_again_after_assignment(monkeypatch):
    spec = _mlp_spec(sizes=(784, 512, 512, 10))
    m, plain = hk.Module(spec), _unoptimised(spec)
    _two_blas_threads(monkeypatch)
    calls = _split_counting(monkeypatch)
    x = (np.random.default_rng(13).standard_normal((1, 784)) * 0.1).astype(np.float32)
    first = m(x)
    for name in ("w0", "w1"):
        v = m.variable_map[name]
        v.assign(v.value * -1.5)  # in place: the same array, new values, a new version
        plain.variable_map[name].assign(v.value)
        count = len(calls)
        _same(m(x), plain(x))  # the first call after a write runs unsplit (the blocks are not made for each write)
        assert len(calls) == count
        _same(m(x), depth_loop_reference(x, _module_layers(m, ("relu", "relu6", None), (True,) * 3)))
        assert len(calls) == count + 1
    assert not np.allclose(m(x), first)


@_split_available
def test_split_chain_from_four_threads(monkeypatch):
    spec = _mlp_spec(sizes=(784, 512, 512, 10))
    m, plain = hk.Module(spec), _unoptimised(spec)
    layers = _module_layers(m, ("relu", "relu6", None), (True,) * 3)
    _two_blas_threads(monkeypatch)
    rng = np.random.default_rng(14)
    inputs = [(rng.standard_normal((1 + i % 2, 784)) * 0.1).astype(np.float32) for i in range(8)]
    split = [depth_loop_reference(x, layers).tobytes() for x in inputs]
    unsplit = [plain(x).tobytes() for x in inputs]  # a caller that finds the worker busy

    def check(i):
        assert m(inputs[i]).tobytes() in (split[i], unsplit[i])

    _from_four_threads(50, inputs, check)


@_split_available
def test_split_chain_propagates_nan(monkeypatch):
    spec = _mlp_spec(sizes=(784, 512, 512, 10), acts=(None, None, None))
    m = hk.Module(spec)
    _two_blas_threads(monkeypatch)
    x = np.random.default_rng(15).standard_normal((2, 784)).astype(np.float32) * 0.1
    x[1, 700] = np.nan  # the second row all NaN
    got = m(x)
    assert np.isnan(got[1]).all() and not np.isnan(got[0]).any()
    assert_loop_bits(got, depth_loop_reference(x, _module_layers(m, (None, None, None), (True,) * 3)))


# From 9 rows on, with one BLAS thread, the layers the fused steps run on the tile kernel run in one compiled call
# (hubkit/ops/_packed_gemm.run_chain): the same kernel calls, so the optimised plan's bits.

def _tile_kernel_here():
    from hubkit.ops import _numba, _packed_gemm

    _numba.set_numba_enabled(True)
    try:
        return _packed_gemm._tile_host() and _packed_gemm.available()
    finally:
        _numba.set_numba_enabled(None)


_tiles = pytest.mark.skipif(not _tile_kernel_here(), reason="no tile kernel here")


def _one_blas_thread(monkeypatch):
    from hubkit.ops import _packed_gemm
    from hubkit.runtime import dense_chain as dc

    monkeypatch.setattr(dc, "blas_threads", lambda: 1)
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)


def _plan_of(m):
    return m._plans[("default", False)][0]


@_tiles
@pytest.mark.parametrize(
    "acts, bias, const_first",
    [(("relu", "relu6", None), (True, True, True), False), ((None, "relu", "relu"), (False, True, False), True)],
)
def test_tile_chain_gives_the_plans_bits(acts, bias, const_first, monkeypatch):
    from hubkit.ops import _packed_gemm

    spec = _mlp_spec(sizes=(96, 128, 80, 16), acts=acts, bias=bias, const_first=const_first)
    m = hk.Module(spec)
    _one_blas_thread(monkeypatch)
    ran = _counting(monkeypatch)
    rng = np.random.default_rng(16)
    for rows in (64, 200, 9, 32, 31):
        x = _special(rng, (rows, 96), np.float32)
        for _ in range(2):  # (the first call of all runs the plan, whose fused steps pack the weights)
            got = m(x)
            _same(got, _plan_of(m).run_steps([x])[0])  # the interpreter: each fused step on its own
        assert ran[-1] is (rows >= 32 or _packed_gemm._narrow_host())  # (9-31 rows: wide tiles take fewer layers)
    assert not np.isnan(got).all()


@_tiles
def test_tile_chain_runs_the_layers_the_tile_leaves_on_numpy(monkeypatch):
    from hubkit.ops import _packed_gemm

    spec = _mlp_spec(sizes=(96, 128, 80, 96, 70), acts=("relu", "relu", None, "relu6"), bias=(True, False, True, True))
    m = hk.Module(spec)
    _one_blas_thread(monkeypatch)
    takes = _packed_gemm.takes
    monkeypatch.setattr(_packed_gemm, "takes", lambda rows, depth, cols, threads: cols != 80 and takes(
        rows, depth, cols, threads))  # the second layer on np.matmul, in the plan and in the chain
    ran = _counting(monkeypatch)
    x = _special(np.random.default_rng(17), (40, 96), np.float32)
    for _ in range(2):
        _same(m(x), _plan_of(m).run_steps([x])[0])
    assert ran == [False, True]  # (the first call packs the weights through the plan)
    groups = _plan_of(m).dense._rows_groups[2]
    assert [type(g).__name__ for g in groups] == ["_TileRun", "int", "_TileRun"]


@_tiles
def test_tile_chain_keeps_its_tables_whatever_the_row_count(monkeypatch):
    from hubkit.ops import _packed_gemm

    m = hk.Module(_mlp_spec(sizes=(96, 128, 80, 16)))
    _one_blas_thread(monkeypatch)
    made = []
    real = _packed_gemm.chain_table
    monkeypatch.setattr(_packed_gemm, "chain_table", lambda layers: made.append(len(layers)) or real(layers))
    ran = _counting(monkeypatch)
    rng = np.random.default_rng(22)
    m(np.ones((64, 96), np.float32))  # (packs the weights through the plan)
    for rows in (64, 65, 64, 200, 65, 33) * 3:
        x = rng.standard_normal((rows, 96)).astype(np.float32)
        _same(m(x), _plan_of(m).run_steps([x])[0])
    assert all(ran[1:]) and len(made) == 1  # one table for the run of layers, made once


@_tiles
def test_tile_chain_leaves_written_weights_to_the_plan(monkeypatch):
    spec = _mlp_spec(sizes=(96, 128, 80, 16))
    m = hk.Module(spec)
    _one_blas_thread(monkeypatch)
    x = np.random.default_rng(18).standard_normal((32, 96)).astype(np.float32)
    m(x)
    ran = _counting(monkeypatch, only=_plan_of(m).dense)

    def reference():  # float64, from the variables' current values
        h = x.astype(np.float64)
        for i, act in enumerate(("relu", "relu6", None)):
            h = h @ m.variable_map[f"w{i}"].value + m.variable_map[f"b{i}"].value
            h = np.maximum(h, 0) if act else h
            h = np.minimum(h, 6) if act == "relu6" else h
        return h

    w1 = m.variable_map["w1"]
    for _ in range(4):  # written in place between calls (training): no stale packed form is used
        w1.assign(w1.value * -0.5)
        np.testing.assert_allclose(m(x), reference(), rtol=1e-4, atol=1e-4)
    assert ran == [False] * 4  # the chain left them to the fused steps (which decide when to pack again)
    (run,) = _plan_of(m).dense._rows_groups[2]
    assert run._kept[2] is None  # and dropped its table: the stale packed forms are not kept alive
    m(x)  # the same weights twice: packed again
    _same(m(x), _plan_of(m).run_steps([x])[0])
    assert ran[-1] is True
    np.testing.assert_allclose(m(x), reference(), rtol=1e-4, atol=1e-4)


@_tiles
@_split_available
def test_tile_chain_on_two_threads_runs_half_of_the_rows_on_the_worker(monkeypatch):
    from hubkit.ops import _packed_gemm, _worker_pool

    spec = _mlp_spec(sizes=(96, 128, 80, 16))
    m = hk.Module(spec)
    _two_blas_threads(monkeypatch)
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 2)  # the fused steps split their rows too
    ran = _counting(monkeypatch)
    rng = np.random.default_rng(20)
    pool = _worker_pool.get_pool()
    for rows in (64, 17, 301):
        x = _special(rng, (rows, 96), np.float32)
        m(x)
        jobs = pool.jobs
        got = m(x)
        _same(got, _plan_of(m).run_steps([x])[0])  # each row by one thread, as the steps' halves: the same bits
        split = any(_packed_gemm.takes(rows, d, c, 2) for d, c in ((96, 128), (128, 80), (80, 16)))
        assert ran[-1] is split and pool.jobs >= jobs  # (wide tiles split 256 rows and more; the caller steals a
        # job the worker has not claimed)
    assert _plan_of(m).dense._rows_groups[0] == (301, 2)
    held = pool.acquire()  # another caller has the worker: the plan runs, as it would
    try:
        assert held
        x = _special(rng, (64, 96), np.float32)
        _same(m(x), _plan_of(m).run_steps([x])[0])
        assert ran[-1] is False
    finally:
        pool.release()
    x = np.ones((15, 96), np.float32)  # fewer rows than two threads split: the plan
    m(x)
    assert ran[-1] is False


@_tiles
def test_tile_chain_from_four_threads(monkeypatch):
    spec = _mlp_spec(sizes=(96, 128, 80, 16))
    m = hk.Module(spec)
    _one_blas_thread(monkeypatch)
    rng = np.random.default_rng(19)
    inputs = [rng.standard_normal((9 + 7 * i, 96)).astype(np.float32) for i in range(6)]
    m(inputs[0])
    expected = [_plan_of(m).run_steps([x])[0] for x in inputs]
    _from_four_threads(100, inputs, lambda i: _same(m(inputs[i]), expected[i]))


@_tiles
def test_run_chain_refuses_what_does_not_fit():
    from hubkit.ops import _numba, _packed_gemm

    _numba.set_numba_enabled(True)
    try:
        w = np.ones((64, 40), np.float32)
        packed = _packed_gemm.pack_weights(w)
        bias = np.ones(40, np.float32)
        assert _packed_gemm.chain_table([(packed, 40, np.ones(39, np.float32), 0)]) is None  # bias of another width
        assert _packed_gemm.chain_table([(packed, 70, None, 0)]) is None  # more columns than the panels hold
        assert _packed_gemm.chain_table([(packed.astype(np.float64), 40, None, 0)]) is None
        unaligned = np.empty(packed.size + 1, np.float32)[1:].reshape(packed.shape)
        unaligned[...] = packed
        assert _packed_gemm.chain_table([(unaligned, 40, bias, 0)]) is None
        table = _packed_gemm.chain_table([(packed, 40, bias, 1), (_packed_gemm.pack_weights(np.ones((40, 8), np.float32)), 8,
                                                                   None, 0)])
        assert _packed_gemm.chain_table([(packed, 40, None, 0), (_packed_gemm.pack_weights(np.ones((39, 8), np.float32)),
                                                                 8, None, 0)]) is None  # depths that do not chain
        assert _packed_gemm.chain_table([]) is None
        real = _packed_gemm.available
        _packed_gemm.available = lambda: False  # Numba off (or no kernel yet): nothing is made
        try:
            assert _packed_gemm.chain_table([(packed, 40, bias, 0)]) is None
        finally:
            _packed_gemm.available = real
        x = np.ones((10, 64), np.float32)
        np.testing.assert_array_equal(_packed_gemm.run_chain(x, table), np.full((10, 8), 40 * 65, np.float32))
        if _packed_gemm._chain_job() is not None:  # half of the rows on the worker, through both layers
            x = np.random.default_rng(21).standard_normal((37, 64)).astype(np.float32)
            _same(_packed_gemm.run_chain(x, table, threads=2), _packed_gemm.run_chain(x, table))
        assert _packed_gemm.run_chain(np.ones((10, 63), np.float32), table) is None  # another width
        assert _packed_gemm.run_chain(np.ones((10, 64), np.float64), table) is None
        assert _packed_gemm.run_chain(np.ones((0, 64), np.float32), table) is None
        assert _packed_gemm.run_chain(np.asfortranarray(np.ones((10, 64), np.float32)), table) is None
    finally:
        _numba.set_numba_enabled(None)
