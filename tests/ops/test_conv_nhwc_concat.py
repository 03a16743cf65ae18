"""A concatenation of convolutions of one NHWC input as one job (hubkit/ops/conv_nhwc_concat.py).

On two threads the prepared concatenation runs every part's halves in one hand-off to the worker, each part in the
tap form (a 1x1 convolution as one tap). It must give the bits of the parts' own prepared calls concatenated, for
every part shape the fire modules and others have; write nothing and give None for a call it was not prepared for;
and decline what it cannot run. The plan's NHWC concatenation step uses it and gives the same bits with it and
without it.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hubkit.ops import _packed_gemm, _worker_pool, conv_nhwc_call, conv_nhwc_concat
from hubkit.ops.conv_nchw import PreparedConv
from hubkit.ops.onnx_conv import window_geometry

pytestmark = pytest.mark.skipif(
    not (_packed_gemm.available() and _worker_pool.available()), reason="no tile kernel or worker pool here"
)

# parts: (kernel, pads, filters) of convolutions of one input; all stride 1, outputs of the input's size
PARTS = {
    "fire": [((1, 1), (0, 0, 0, 0), 64), ((3, 3), (1, 1, 1, 1), 64)],  # SqueezeNet's fire module
    "fire_wide": [((1, 1), (0, 0, 0, 0), 256), ((3, 3), (1, 1, 1, 1), 256)],  # its 3x3 split by column panels
    "two_3x3": [((3, 3), (1, 1, 1, 1), 40), ((3, 3), (1, 1, 1, 1), 24), ((1, 1), (0, 0, 0, 0), 9)],
    "1x1s": [((1, 1), (0, 0, 0, 0), 33), ((1, 1), (0, 0, 0, 0), 70)],
    "5x5": [((5, 5), (2, 2, 2, 2), 20), ((1, 1), (0, 0, 0, 0), 16)],
}


@pytest.fixture
def split(monkeypatch):
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 2)


def _parts(name, n, hw, c, act, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *hw, c)).astype(np.float32)
    calls = []
    for kernel, pads, m in PARTS[name]:
        bias = rng.standard_normal(m).astype(np.float32) if m % 2 else None  # odd filter counts: a bias
        prep = PreparedConv(rng.standard_normal((m, c, *kernel)).astype(np.float32), bias)
        out_hw, begin, end = window_geometry(hw, kernel, (1, 1), (1, 1), pads, "NOTSET")
        calls.append(conv_nhwc_call.prepare(x.shape, prep, act, (1, 1), (1, 1), begin, end, out_hw))
    return x, calls


def _args(x, calls):
    return tuple(v for call in calls for v in (x, call.prep))


@pytest.mark.parametrize(("kernel", "pads"), [((1, 1), (0, 0, 0, 0)), ((3, 3), (1, 1, 1, 1)), ((3, 3), (0, 0, 0, 0))])
def test_one_part_is_a_lone_convolution_with_its_own_bits(split, kernel, pads):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 27, 27, 32)).astype(np.float32)
    prep = PreparedConv(rng.standard_normal((48, 32, *kernel)).astype(np.float32), rng.standard_normal(48).astype(np.float32))
    out_hw, begin, end = window_geometry((27, 27), kernel, (1, 1), (1, 1), pads, "NOTSET")
    call = conv_nhwc_call.prepare(x.shape, prep, 1, (1, 1), (1, 1), begin, end, out_hw)
    job = conv_nhwc_concat.prepare(x.shape, [call])
    assert job is not None
    got = job((x, prep))
    assert got is not None and got.tobytes() == call(x).tobytes()


@pytest.mark.parametrize("name", sorted(PARTS))
@pytest.mark.parametrize(("n", "hw", "c"), [(1, (13, 13), 64), (1, (27, 25), 16), (2, (7, 9), 5)])
@pytest.mark.parametrize("act", [0, 1, 2])
def test_the_job_gives_the_parts_bits(split, name, n, hw, c, act):
    x, calls = _parts(name, n, hw, c, act)
    concat = conv_nhwc_concat.prepare(x.shape, calls)
    assert concat is not None
    want = np.concatenate([call(x) for call in calls], axis=3)
    for _ in range(2):  # the kept blocks are the same for the next call
        got = concat(_args(x, calls))
        assert got is not None and got.shape == want.shape and got.tobytes() == want.tobytes()


def test_nan_and_signed_zeros_come_out_as_the_parts_give_them(split):
    x, calls = _parts("fire", 1, (13, 13), 64, 1)
    x[0, 3, 4, 5] = np.nan
    x[0, 7] = -0.0
    concat = conv_nhwc_concat.prepare(x.shape, calls)
    want = np.concatenate([call(x) for call in calls], axis=3)
    got = concat(_args(x, calls))
    assert np.isnan(want).any() and got.tobytes() == want.tobytes()


def test_a_call_it_was_not_prepared_for_writes_nothing(split, monkeypatch):
    x, calls = _parts("fire", 1, (13, 13), 16, 1)
    concat = conv_nhwc_concat.prepare(x.shape, calls)
    assert concat is not None
    other = _parts("fire", 1, (13, 13), 16, 1, seed=1)[1][0].prep
    refused = [
        (x[:, :12], calls[0].prep, x[:, :12], calls[1].prep),  # another shape
        (x.astype(np.float64), calls[0].prep, x.astype(np.float64), calls[1].prep),  # another dtype
        (np.asfortranarray(x), calls[0].prep, np.asfortranarray(x), calls[1].prep),  # not C-contiguous
        (x, calls[0].prep, x.copy(), calls[1].prep),  # parts of different inputs
        (x, other, x, calls[1].prep),  # other filters
        (x, calls[0].prep),  # fewer parts
        (x.tolist(), calls[0].prep, x.tolist(), calls[1].prep),  # not an array
    ]
    for args in refused:
        assert concat(args) is None
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)  # one thread: the parts' own calls run
    assert concat(_args(x, calls)) is None


def test_a_busy_worker_gives_none_and_the_step_runs_the_parts(split):
    x, calls = _parts("fire", 1, (13, 13), 16, 1)
    concat = conv_nhwc_concat.prepare(x.shape, calls)
    pool = _worker_pool.get_pool()
    held = threading.Event()
    done = threading.Event()

    def hold():  # another thread's call holds the pool
        assert pool.acquire()
        held.set()
        done.wait(5)
        pool.release()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(5)
        assert concat(_args(x, calls)) is None
    finally:
        done.set()
        thread.join(5)
    assert concat(_args(x, calls)) is not None


def test_what_it_cannot_run_is_declined(split):
    x, calls = _parts("fire", 1, (13, 13), 16, 1)
    assert conv_nhwc_concat.prepare(x.shape, []) is None  # no part
    assert conv_nhwc_concat.prepare(x.shape, [calls[0], None]) is None  # a part without a prepared call
    assert conv_nhwc_concat.prepare((1, 13, 12, 16), calls) is None  # prepared for another input
    rng = np.random.default_rng(3)
    prep = PreparedConv(rng.standard_normal((8, 16, 3, 3)).astype(np.float32), None)
    out_hw, begin, end = window_geometry((13, 13), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), "NOTSET")
    valid = conv_nhwc_call.prepare(x.shape, prep, 1, (1, 1), (1, 1), begin, end, out_hw)  # 11x11: another size
    assert conv_nhwc_concat.prepare(x.shape, [calls[0], valid]) is None
    out_hw, begin, end = window_geometry((13, 13), (3, 3), (1, 1), (1, 1), (2, 2, 0, 0), "NOTSET")
    shifted = conv_nhwc_call.prepare(x.shape, prep, 1, (1, 1), (1, 1), begin, end, out_hw)  # pads otherwise
    assert shifted is not None and shifted.out_shape[1:3] == (13, 13)
    assert conv_nhwc_concat.prepare(x.shape, [calls[1], shifted]) is None


@pytest.mark.parametrize(("c", "kc"), [(1024, None), (512, 256)])
def test_a_1x1_part_whose_call_sums_its_depth_in_blocks_is_declined(split, monkeypatch, c, kc):
    """A 1x1 part's own call is the packed GEMM, which sums a deep input in blocks of ``kc_for``'s depth (on AVX2
    above 800 channels, on AVX-512 above 256); the tap form sums it in one pass, other bits: not taken."""
    if kc is not None:
        monkeypatch.setattr(_packed_gemm, "kc_for", lambda depth: kc)
    x, calls = _parts("1x1s", 1, (13, 13), c, 0)
    assert calls[0].kc_mc[0] < c
    assert conv_nhwc_concat.prepare(x.shape, calls) is None


def test_the_job_keeps_what_its_blocks_point_at(split):
    """The blocks hold the packed filters' and biases' addresses: the call keeps those arrays, whatever becomes of
    the parts' prepared calls and filters."""
    import gc

    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 13, 13, 16)).astype(np.float32)
    calls = []
    for m in (4096, 8):
        prep = PreparedConv(rng.standard_normal((m, 16, 1, 1)).astype(np.float32), rng.standard_normal(m).astype(np.float32))
        calls.append(conv_nhwc_call.prepare(x.shape, prep, 0, (1, 1), (1, 1), (0, 0), (0, 0), (13, 13)))
    want = np.concatenate([call(x) for call in calls], axis=3)
    concat = conv_nhwc_concat.prepare(x.shape, calls)
    preps = [call.prep for call in calls]
    del calls
    for prep in preps:
        prep.bias = np.zeros_like(prep.bias)  # the old bias has no other owner now
    gc.collect()
    junk = [np.full(4096, 1e30, np.float32) for _ in range(64)]  # noqa: F841 - takes the freed memory, if any
    got = concat((x, preps[0], x, preps[1]))
    assert got is not None and got.tobytes() == want.tobytes()


def test_a_1x1_part_its_call_keeps_on_one_thread_is_declined(split):
    """Below ``_split_rows.MIN_ROWS`` rows a 1x1 call runs on this thread alone: the worker would cost more."""
    x, calls = _parts("1x1s", 2, (1, 1), 64, 1)
    assert not calls[0]._split
    assert conv_nhwc_concat.prepare(x.shape, calls) is None
    assert conv_nhwc_concat.prepare(x.shape, calls[:1]) is None


def test_one_thread_prepares_nothing(monkeypatch):
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)
    x, calls = _parts("fire", 1, (13, 13), 16, 1)
    assert conv_nhwc_concat.prepare(x.shape, calls) is None
