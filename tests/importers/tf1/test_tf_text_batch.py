"""The whole-batch paths of the TF string ops equal their row-by-row paths (the reference semantics)."""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.ops import tf_text
from hubkit.ops.registry import get_op

ALPHABET = ["a", "B", "z", " ", "\t", ",", ".", "!", "¿", "é", "É", "İ", "ß", "\r", "\n", "-", "x", "Q", "'", "\x00", "\x1f",
            "\U0001F600", "\udcff"]


def _batch(rng, n, with_mark):
    letters = ALPHABET if with_mark else [c for c in ALPHABET if c != "\x1f"]
    out = np.empty(n, dtype=object)
    out[:] = ["".join(rng.choice(letters, size=int(rng.integers(0, 12)))) for _ in range(n)]
    return out


def _forward(op):
    return get_op(op).forward


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("delimiter", [" ", " \t", ",.", "\t"])
def test_string_split_batch_equals_row_by_row(seed, delimiter):
    rng = np.random.default_rng(seed)
    x = _batch(rng, 40, with_mark=seed == 5)
    fast = _forward("TfStringSplit")(x, np.array(delimiter, dtype=object))
    slow = tf_text._sparse_rows([tf_text._split_one(s, delimiter, True) for s in x])
    np.testing.assert_array_equal(fast[0], slow[0])
    assert fast[1].tolist() == slow[1].tolist()
    np.testing.assert_array_equal(fast[2], slow[2])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("pattern, rewrite", [(r"\pP", ""), (r"[\pP\s]+", " "), (r"\s+", "_"), (r"[a-z]", r"<\0>"),
                                              (r"\PL+", ""), (r"[^a]", "")])
def test_regex_replace_batch_equals_row_by_row(seed, pattern, rewrite):
    rng = np.random.default_rng(seed)
    x = _batch(rng, 40, with_mark=seed == 5)
    fast = _forward("TfStaticRegexReplace")(x, pattern=pattern, rewrite=rewrite)
    rows = tf_text._regex_replace(x[:1], pattern, rewrite, True).tolist()  # one row: never the batch path
    slow = [tf_text._regex_replace(x[i:i + 1], pattern, rewrite, True)[0] for i in range(len(x))]
    assert rows == slow[:1]
    assert fast.tolist() == slow


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("encoding", ["", "utf-8"])
def test_string_lower_batch_equals_row_by_row(seed, encoding):
    rng = np.random.default_rng(seed)
    x = _batch(rng, 40, with_mark=seed == 3)
    fast = _forward("TfStringLower")(x, encoding=encoding)
    slow = [_forward("TfStringLower")(x[i:i + 1], encoding=encoding)[0] for i in range(len(x))]
    assert fast.tolist() == slow


def test_batch_paths_are_taken_for_the_text_embedding_shapes():
    assert tf_text._CLASS_ATOM.fullmatch(r"\pP")
    assert not tf_text._CLASS_ATOM.fullmatch(r"x*")
    assert not tf_text._CLASS_ATOM.fullmatch(r"(a)")
    x = np.empty(20, dtype=object)
    x[:] = ["a b"] * 20
    assert tf_text._split_batch(x.tolist(), " \t") is not None


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reduction", ["sum", "mean", "sqrtn"])
def test_sparse_segment_reduce_equals_scatter_add(seed, reduction):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((7, 3)).astype(np.float32)
    segment_ids = np.sort(rng.integers(0, 9, 30))  # gaps: empty segments stay zero
    indices = rng.integers(0, 7, 30)
    out = get_op("TfSparseSegmentReduce").forward(data, indices, segment_ids, np.int32(12), reduction=reduction)
    ref = np.zeros((12, 3), np.float64)
    np.add.at(ref, segment_ids, data[indices].astype(np.float64))
    counts = np.maximum(np.bincount(segment_ids, minlength=12), 1)[:, None]
    ref = ref / {"sum": 1, "mean": counts, "sqrtn": np.sqrt(counts)}[reduction]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
