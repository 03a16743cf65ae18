"""The UTF-8 buffer path of the TF string ops (ops/tf_text_buffers.py) equals the ops' own kernels and TF.

Every fast kernel is compared with the op's object-array kernel (the reference semantics) on hostile batches:
empty strings and rows, NULs, the old row mark, tabs and ``\\r``, non-ASCII letters and punctuation, emoji, and
lone surrogates (which take the fallback). The whole text module is compared with TF's recorded outputs and with
its unoptimised plan.
"""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.graph import int64, string
from hubkit.ops import _numba, tf_text_buffers
from hubkit.ops._farmhash import fingerprint64
from hubkit.ops.registry import get_op
from hubkit.runtime.optimize import describe_signature_plan, set_optimize_enabled
from tests.importers.tf1.conftest import as_feed, fixture_path, recorded

K = tf_text_buffers.kernels()
pytestmark = pytest.mark.skipif(K is None, reason="the buffer path needs Numba")

ALPHABET = ["a", "B", "z", " ", "  ", "\t", ",", ".", "!", "¿", "é", "É", "İ", "ß", "\r", "\n", "-", "x", "Q", "'",
            "\x00", "\x1f", "\U0001F600", "…", "«", "\u00a0", "\u3000", "_", "$", "+"]


def _batch(seed: int, n: int = 40, surrogates: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    letters = ALPHABET + (["\udcff"] if surrogates else [])
    out = np.empty(n, dtype=object)
    out[:] = ["".join(rng.choice(letters, size=int(rng.integers(0, 14)))) for _ in range(n)]
    out[0] = ""
    return out


def _buffer(x: np.ndarray) -> tf_text_buffers.Utf8Strings | np.ndarray:
    buf = tf_text_buffers.Utf8Strings.from_array(x, K)
    return x if buf is None else buf


def _array(x):
    return x.to_array() if isinstance(x, tf_text_buffers.Utf8Strings) else x


def _step(op: str, emit=frozenset({0})):
    forward = get_op(op).forward
    return tf_text_buffers.BufferedStep(op, forward, tf_text_buffers._fast_kernel(op), frozenset(emit))


@pytest.fixture(autouse=True)
def _small_batches_too(monkeypatch):
    monkeypatch.setattr(tf_text_buffers, "MIN_BUFFER_STRINGS", 0)


@pytest.mark.parametrize("seed", range(5))
def test_buffer_round_trip(seed):
    x = _batch(seed)
    buf = tf_text_buffers.Utf8Strings.from_array(x, K)
    assert buf.to_array().tolist() == x.tolist()
    x[1] = "a\udcffb"  # a lone surrogate has no UTF-8 bytes: the ops' own kernels handle it
    assert tf_text_buffers.Utf8Strings.from_array(x, K) is None


def test_fingerprints_equal_farmhash_at_every_length():
    rng = np.random.default_rng(0)
    tokens = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in list(range(0, 200)) * 2 + [255, 256, 1000, 4097]]
    data = np.frombuffer(b"".join(tokens), np.uint8)
    lengths = np.array([len(t) for t in tokens])
    ends = np.cumsum(lengths)
    out = np.empty(len(tokens), np.uint64)
    K.fingerprints(data, ends - lengths, ends, out)
    assert out.tolist() == [fingerprint64(t) for t in tokens]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pattern, rewrite", [(r"\pP", ""), (r"[\pP\s]+", " "), (r"\s", "_"), (r"\PL+", ""),
                                              (r"[^a]", ""), (r"\p{Sm}", "<plus>"), (r"[[:punct:]]+", "é"),
                                              (r"\pP", "\udcff"),
                                              (r"[a-z]", r"<\0>")])
@pytest.mark.parametrize("surrogates", [False, True])
def test_regex_replace_buffer_equals_op(seed, pattern, rewrite, surrogates):
    x = _batch(seed, surrogates=surrogates)
    ref = get_op("TfStaticRegexReplace").forward(x, pattern=pattern, rewrite=rewrite).tolist()
    step = _step("TfStaticRegexReplace")
    assert _array(step(x, pattern=pattern, rewrite=rewrite)).tolist() == ref
    assert _array(step(_buffer(x), pattern=pattern, rewrite=rewrite)).tolist() == ref


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("encoding", ["", "utf-8"])
def test_string_lower_buffer_equals_op(seed, encoding):
    for x in (_batch(seed), np.array(["ABC xyZ", "Q"] * 10, dtype=object)):
        ref = get_op("TfStringLower").forward(x, encoding=encoding).tolist()
        assert _array(_step("TfStringLower")(_buffer(x), encoding=encoding)).tolist() == ref


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("delimiter", [" ", " \t", ",.", "\t", "", "é", "\x00"])
@pytest.mark.parametrize("skip_empty", [True, False])
def test_string_split_buffer_equals_op(seed, delimiter, skip_empty):
    x = _batch(seed)
    d = np.array(delimiter, dtype=object)
    ref = get_op("TfStringSplit").forward(x, d, skip_empty=skip_empty)
    for emit in (frozenset(), frozenset({1})):
        out = _step("TfStringSplit", emit)(_buffer(x), d, skip_empty=skip_empty)
        np.testing.assert_array_equal(out[0].reshape(-1, 2), ref[0])
        assert _array(out[1]).tolist() == ref[1].tolist()
        assert isinstance(out[1], tf_text_buffers.Utf8Strings) == bool(emit)
        np.testing.assert_array_equal(out[2], ref[2])


def test_split_of_empty_batch_and_empty_rows():
    d = np.array(" ", dtype=object)
    for x in (np.zeros(0, dtype=object), np.array(["", " ", "  "], dtype=object)):
        ref = get_op("TfStringSplit").forward(x, d)
        out = _step("TfStringSplit")(_buffer(x), d)
        assert out[0].shape == (0, 2) and _array(out[1]).tolist() == [] and out[2].tolist() == ref[2].tolist()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("delimiter", [" ", "é", ""])
def test_hash_bucket_and_lookup_of_split_tokens_equal_ops(seed, delimiter, tmp_path):
    x = _batch(seed)
    x[1] = "a é É ß\r \U0001F600 …, x"  # vocabulary words
    d = np.array(delimiter, dtype=object)
    tokens = get_op("TfStringSplit").forward(x, d)[1]
    buffered = _step("TfStringSplit", {1})(_buffer(x), d)[1]
    for buckets in (1, 7, 1000003):
        ref = get_op("TfStringToHashBucketFast").forward(tokens, num_buckets=buckets)
        out = _step("TfStringToHashBucketFast", ())(buffered, num_buckets=buckets)
        np.testing.assert_array_equal(out, ref)
    vocab = tmp_path / "vocab.txt"  # unicode keys, a key with a tab, a split piece of "é", \r before a newline
    vocab.write_bytes("a\né\nÉ\nß\r\n\U0001F600\nx y\n,\n\t\n".encode() + b"\xc3\n" + "…\n".encode())
    table = get_op("TfTextFileTableLookup")
    attrs = {"key_index": -2, "value_index": -1, "vocab_size": -1, "delimiter": "\t", "key_dtype": string,
             "value_dtype": int64}
    from hubkit.ops.tf_text import read_text_file_table

    built = read_text_file_table(str(vocab), **attrs)
    default = np.array(-1, dtype=np.int64)
    ref = table.forward(None, tokens, default, table=built, **attrs)
    step = _step("TfTextFileTableLookup", ())
    out = step(None, buffered, default, table=built, **attrs)
    np.testing.assert_array_equal(out, ref)
    assert (out >= 0).any() or delimiter != " "
    np.testing.assert_array_equal(step(None, buffered, default, table=built, **attrs), ref)  # the built table reused


def _text_module_pair():
    set_optimize_enabled(True)
    try:
        fast = hk.Module(fixture_path("text_embedding"))
        set_optimize_enabled(False)
        slow = hk.Module(fixture_path("text_embedding"))
    finally:
        set_optimize_enabled(None)
    return fast, slow


def test_text_module_matches_tf_recorded_outputs_through_buffers():
    rec = recorded("text_embedding")
    fast, _ = _text_module_pair()
    assert "[utf8]" in describe_signature_plan(fast)
    out = fast(as_feed(rec["in__default__sentences"]))
    np.testing.assert_allclose(out, rec["out__default__default"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n", [1, 17, 200])
def test_text_module_buffers_equal_unoptimised_plan(seed, n):
    fast, slow = _text_module_pair()
    for x in (_batch(seed, n), np.array([""] * n, dtype=object), _batch(seed, n, surrogates=True)):
        try:
            ref = slow(x)
        except hk.errors.HubkitError as e:  # a lone surrogate cannot be hashed: the same error either way
            with pytest.raises(type(e)):
                fast(x)
            continue
        np.testing.assert_allclose(fast(x), ref, rtol=1e-6, atol=1e-7)


def test_numba_switched_off_after_compiling_falls_back():
    fast, slow = _text_module_pair()
    x = _batch(3, 50)
    ref = slow(x)
    _numba.set_numba_enabled(False)
    try:
        np.testing.assert_allclose(fast(x), ref, rtol=1e-6, atol=1e-7)
    finally:
        _numba.set_numba_enabled(None)


@pytest.mark.parametrize("numba", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_unique_fill_empty_rows_segment_reduce_kernels_equal_numpy(numba, seed):
    rng = np.random.default_rng(seed)
    _numba.set_numba_enabled(numba)
    try:
        x = rng.integers(-5, 50, 300)
        y, idx = get_op("TfUnique").forward(x, out_idx=int64)
        assert y[idx].tolist() == x.tolist() and y.tolist() == list(dict.fromkeys(x.tolist()))
        rows = np.sort(rng.choice(12, 20))
        indices = np.stack([rows, np.zeros_like(rows)], 1)
        for r in range(1, len(rows)):
            if rows[r] == rows[r - 1]:
                indices[r, 1] = indices[r - 1, 1] + 1
        values = rng.integers(0, 9, len(rows))
        out = get_op("TfSparseFillEmptyRows").forward(indices, values, np.array([14, 25]), np.int64(-3))
        dense = np.full((14, 25), 99)
        dense[out[0][:, 0], out[0][:, 1]] = out[1]
        empty = np.setdiff1d(np.arange(14), rows)
        assert (dense[empty, 0] == -3).all() and out[2].tolist() == [r in empty for r in range(14)]
        np.testing.assert_array_equal(out[1][out[3]], values)
        shuffled = rng.permutation(len(rows))  # rows out of order: the general path
        again = get_op("TfSparseFillEmptyRows").forward(indices[shuffled], values[shuffled], np.array([14, 25]),
                                                        np.int64(-3))
        np.testing.assert_array_equal(np.sort(again[0][:, 0]), out[0][:, 0])
        np.testing.assert_array_equal(again[1][again[3]], values[shuffled])
        data = rng.standard_normal((7, 3)).astype(np.float32)
        ids = rng.integers(0, 7, 30)
        segs = np.sort(rng.integers(0, 9, 30))
        for reduction in ("sum", "mean", "sqrtn"):
            got = get_op("TfSparseSegmentReduce").forward(data, ids, segs, np.int32(11), reduction=reduction)
            ref = np.zeros((11, 3))
            np.add.at(ref, segs, data[ids].astype(np.float64))
            counts = np.maximum(np.bincount(segs, minlength=11), 1)[:, None]
            ref = ref / (counts if reduction == "mean" else np.sqrt(counts) if reduction == "sqrtn" else 1)
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
        with pytest.raises(Exception, match="sorted"):
            get_op("TfSparseSegmentReduce").forward(data, ids, segs[::-1].copy(), reduction="sum")
        with pytest.raises(Exception, match="out of range"):
            get_op("TfSparseSegmentReduce").forward(data, ids + 7, segs, reduction="sum")
    finally:
        _numba.set_numba_enabled(None)
