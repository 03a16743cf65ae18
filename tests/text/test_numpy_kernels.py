"""The NumPy path's large-batch kernels give exactly the ids and sums of the straightforward ones.

The vectorised tokenizer (``hubkit.ops._vocab_numpy``) only runs on batches of a few kilobytes,
and the by-position combiner only when there are more rows than ids per row, so these tests
force each path and compare it with the per-token dict lookup and a float64 reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.errors import OpError
from hubkit.ops import _numba, _vocab, _vocab_numpy, sparse
from hubkit.text import fingerprint64

RNG = np.random.default_rng(11)

# Keys are 16 bytes: words around 8 and 16 bytes, a vocabulary word with a NUL byte (a key
# padded with zeros must not match it), non-ASCII and duplicate lines, an empty line.
WORDS = [
    "the", "cat", "abcdefgh", "abcdefghi", "abcdefghijklmnop", "abcdefghijklmnopq", "ab\x00", "naïve",
    "cat", "", "_x", "don't", "x" * 40, "12",
]


@pytest.fixture
def vocab(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return _vocab.load_vocabulary(str(path))


@pytest.fixture(autouse=True)
def numpy_kernels():
    _numba.set_numba_enabled(False)
    yield
    _numba.set_numba_enabled(None)


def both_paths(monkeypatch, vocab, sentences, **kwargs):
    """(vectorised result, per-token dict result) of tokenize_and_lookup on ``sentences``."""
    args = dict(lower=False, strip_punctuation=False, num_oov_buckets=0, default_value=-1)
    args.update(kwargs)
    batch = np.asarray(sentences, dtype=object)
    monkeypatch.setattr(_vocab, "VECTORIZED_MIN_BYTES", 0)
    fast = _vocab.tokenize_and_lookup(batch, vocab, **args)
    monkeypatch.setattr(_vocab, "VECTORIZED_MIN_BYTES", 1 << 62)
    slow = _vocab.tokenize_and_lookup(batch, vocab, **args)
    return fast, slow


SENTENCES = [
    ["the cat", ""],
    ["", "", "   "],
    ["The CAT, sat!", "dog and mouse", "...", "don't stop", "a,b c"],
    ["abcdefgh abcdefghi abcdefghij", "abcdefghijklmnop abcdefghijklmnopq abcdefghijklmno"],
    ["x" * 40 + " " + "x" * 39, "y" * 300, "ab ab\x00 ab\x00\x00"],
    ["a\tb\nc\x0bd\x0ce\rf\x1cg\x1fh", "  lead and trail  ", "\n"],
    ["_x __ on;on 12 3.5 -7", "ABCDEFGH ABCDEFGHIJKLMNOP Abcdefghijklmnopq"],
]


@pytest.mark.parametrize("sentences", SENTENCES)
@pytest.mark.parametrize(("lower", "strip"), [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("oov", [{"num_oov_buckets": 3}, {"default_value": -7}])
def test_vectorised_tokenizer_matches_dict_lookups(monkeypatch, vocab, sentences, lower, strip, oov):
    fast, slow = both_paths(monkeypatch, vocab, sentences, lower=lower, strip_punctuation=strip, **oov)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.int64


def test_non_ascii_batches_use_the_dict_path(monkeypatch, vocab):
    fast, slow = both_paths(monkeypatch, vocab, ["naïve cat", "the"], num_oov_buckets=2)
    assert fast[0].tolist() == slow[0].tolist() == [7, 1, 0]


def test_random_batch_over_a_big_vocabulary_with_crowded_slots(monkeypatch, tmp_path):
    letters = list("abcdefgh")
    words = ["".join(RNG.choice(letters, size=RNG.integers(1, 20))) for _ in range(3000)]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(words))
    vocab = _vocab.load_vocabulary(str(path))
    pool = words + ["zzz", "qq", "abcdefghabcdefghabcdefgh"]
    sentences = [" ".join(RNG.choice(pool, size=RNG.integers(0, 30))) for _ in range(300)]
    fast, slow = both_paths(monkeypatch, vocab, sentences, num_oov_buckets=7)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    # Tokens still unsettled after the probing rounds go to the dict: same ids.
    monkeypatch.setattr(_vocab_numpy, "_PROBE_ROUNDS", 1)
    fast1, _ = both_paths(monkeypatch, vocab, sentences, num_oov_buckets=7)
    for a, b in zip(fast1, slow):
        np.testing.assert_array_equal(a, b)


def test_key_table_finds_every_word_once():
    words = [f"w{i}" for i in range(1000)] + ["é" * 8]
    table = _vocab_numpy.KeyTable("\n".join(words).encode())
    data = "".join(words).encode()
    buf = _vocab_numpy._padded(data)
    lengths = np.array([len(w.encode()) for w in words])
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    ids, unresolved = table.find(*_vocab_numpy._words(buf, starts, lengths), lengths)
    assert ids.tolist() == list(range(len(words))) and unresolved.size == 0
    assert int((table.slots[:, 2] != 0).sum()) == len(words)


def test_key_table_first_of_equal_lines_wins():
    lines = ["x", "a", "b", "a", "", "b", "a"] * 3  # crowded: every key inserted 6 or 9 times
    table = _vocab_numpy.KeyTable("\n".join(lines).encode())
    keys = ["a", "b", "x"]
    data = "".join(keys).encode()
    lengths = np.ones(3, dtype=np.int64)
    ids, _ = table.find(*_vocab_numpy._words(_vocab_numpy._padded(data), np.arange(3), lengths), lengths)
    assert ids.tolist() == [1, 2, 0]


def test_column_fnv_is_fingerprint64():
    tokens = ["", "a", "foobar", "abcdefgh", "abcdefghi", "abcdefghijklmnop", "ab\x00"]
    data = "".join(tokens).encode()
    lengths = np.array([len(t) for t in tokens])
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    w0, w1 = _vocab_numpy._words(_vocab_numpy._padded(data), starts, lengths)
    got = _vocab_numpy.fnv1a64_keys(w0, w1, lengths)
    assert got.tolist() == [fingerprint64(t) for t in tokens]


# -- the combiner ------------------------------------------------------------------------------------
def reference(params, ids, row_ids, num_rows, weights, combiner):
    out = np.zeros((num_rows, *params.shape[1:]))
    w = np.ones(len(ids)) if weights is None else weights.astype(np.float64)
    den = np.zeros(num_rows)
    for m, (i, r) in enumerate(zip(ids, row_ids)):
        if i >= 0:
            out[r] += w[m] * params[i]
            den[r] += w[m] ** 2 if combiner == "sqrtn" else w[m]
    if combiner == "sqrtn":
        den = np.sqrt(den)
    if combiner != "sum":
        out /= np.where(den > 0, den, 1.0).reshape((-1,) + (1,) * (out.ndim - 1))
    return out


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sort", [True, False])
@pytest.mark.parametrize("row_shape", [(5,), (2, 3)])
@pytest.mark.parametrize("block_bytes", [1 << 18, 100])
def test_combiner_by_position_and_long_rows(monkeypatch, combiner, weighted, sort, row_shape, block_bytes):
    monkeypatch.setattr(sparse, "_BLOCK_BYTES", block_bytes)  # 100: two or three rows at a time
    params = RNG.normal(size=(30, *row_shape))
    lengths = RNG.integers(0, 6, size=200)
    lengths[[3, 50]] = [150, 90]  # rows far longer than the others are summed one by one
    row_ids = np.repeat(np.arange(200), lengths)
    if not sort:
        row_ids = RNG.permutation(row_ids)
    ids = RNG.integers(-2, 30, size=row_ids.size)
    weights = RNG.random(row_ids.size) + 0.1 if weighted else None
    code = sparse.COMBINERS[combiner]
    got = sparse.combine_numpy(params, ids, row_ids, 203, weights, code)
    np.testing.assert_allclose(got, reference(params, ids, row_ids, 203, weights, combiner), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block_bytes", [1 << 18, 1000])
def test_combiner_sums_each_row_in_token_order_like_a_loop(monkeypatch, block_bytes):
    """float32 sums by position equal a per-row ``take(...).sum(axis=0)`` bit for bit."""
    monkeypatch.setattr(sparse, "_BLOCK_BYTES", block_bytes)
    params = RNG.normal(size=(1000, 64)).astype(np.float32)
    lengths = RNG.integers(1, 41, size=300)
    row_ids = np.repeat(np.arange(300), lengths)
    ids = RNG.integers(0, 1000, size=row_ids.size)
    got = sparse.combine_numpy(params, ids, row_ids, 300, None, sparse.COMBINERS["sum"])
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    want = np.stack([params[ids[s : s + n]].sum(axis=0) for s, n in zip(starts, lengths)])
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize(("ids", "row_ids"), [([4, 0, 4], [0, 0, 0]), ([4, -1, 2], [0, 0, 0]), ([-1], [0])])
def test_combiner_of_one_row(combiner, ids, row_ids):
    params = RNG.normal(size=(5, 3)).astype(np.float32)
    ids, row_ids = np.array(ids), np.array(row_ids)
    got = sparse.combine_numpy(params, ids, row_ids, 1, None, sparse.COMBINERS[combiner])
    assert got.shape == (1, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference(params, ids, row_ids, 1, None, combiner), rtol=1e-6)


@pytest.mark.parametrize(("ids", "row_ids", "message"), [([0, 5], [0, 0], "id 5 of value 1"), ([0, 1], [0, 1], "row 1")])
def test_combiner_of_one_row_reports_bad_ids_and_rows(ids, row_ids, message):
    with pytest.raises(OpError, match=message):
        sparse.combine_numpy(np.ones((5, 2)), np.array(ids), np.array(row_ids), 1, None, 0)


def test_combiner_reports_mismatched_ids_and_row_ids():
    with pytest.raises(OpError, match="ids has 3 values, row_ids 2; they must be equal"):
        sparse.combine_numpy(np.ones((4, 2)), np.array([0, 1, 2]), np.array([0, 1]), 2, None, 0)

