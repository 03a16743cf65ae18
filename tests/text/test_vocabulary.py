"""Vocabulary tables: file format, lookups, stable OOV buckets and the fused tokenize-and-lookup op."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import hubkit as hk
from hubkit.text import fingerprint64

WORDS = ["the", "cat", "sat", "on", "mat", "naïve", "日本", "don't", "_x"]


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return str(path)


def lookup(path, tokens, **kwargs):
    g = hk.Graph()
    with g.as_default():
        t = hk.placeholder(hk.string, None)
        ids = hk.text.vocabulary_table(hk.constant(path), **kwargs).lookup(t)
    return hk.Session(g).run(ids, {t: tokens})


def fused(path, sentences, lower=False, strip_punctuation=False, **kwargs):
    g = hk.Graph()
    with g.as_default():
        s = hk.placeholder(hk.string, [None])
        r = hk.text.vocabulary_table(hk.constant(path), **kwargs).tokenize_and_lookup(
            s, lower=lower, strip_punctuation=strip_punctuation
        )
    return hk.Session(g).run([r.values, r.row_ids, r.num_rows], {s: sentences})


def composed(path, sentences, lower=False, strip_punctuation=False, **kwargs):
    g = hk.Graph()
    with g.as_default():
        s = hk.placeholder(hk.string, [None])
        x = hk.text.lower(s) if lower else s
        if strip_punctuation:
            x = hk.text.regex_replace(x, r"[^\w\s]", "")
        r = hk.text.vocabulary_table(hk.constant(path), **kwargs).lookup(hk.text.whitespace_tokenize(x))
    return hk.Session(g).run([r.values, r.row_ids, r.num_rows], {s: sentences})


def test_fingerprint_is_fnv1a_64():
    # Reference values of FNV-1a 64 (offset basis and prime from the FNV specification).
    assert fingerprint64("") == 0xCBF29CE484222325
    assert fingerprint64("a") == 0xAF63DC4C8601EC8C
    assert fingerprint64("foobar") == 0x85944171F73967E8
    assert fingerprint64("é") == fingerprint64("\u00e9") != fingerprint64("e\u0301")  # bytes, no normalization


def test_fingerprint_is_the_same_in_other_processes():
    code = "from hubkit.text import fingerprint64; print(fingerprint64('unknown-word'))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True,
            text=True, check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outs == {str(fingerprint64("unknown-word"))}


def test_lookup_ids_are_line_numbers_and_keep_shape(vocab_file, kernels):
    ids = lookup(vocab_file, [["the", "mat"], ["日本", "naïve"]])
    assert ids.dtype == np.int64 and ids.tolist() == [[0, 4], [6, 5]]


def test_oov_uses_default_value_or_stable_buckets(vocab_file, kernels):
    assert lookup(vocab_file, ["dog", "cat"]).tolist() == [-1, 1]
    assert lookup(vocab_file, ["dog", "cat"], default_value=99).tolist() == [99, 1]
    ids = lookup(vocab_file, ["dog", "Cat", "", "cat"], num_oov_buckets=5)
    expected = [len(WORDS) + fingerprint64(w) % 5 for w in ("dog", "Cat", "")]
    assert ids.tolist() == [*expected, 1]


def test_duplicates_first_line_wins_and_crlf(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"a\r\nb\r\na\r\nc")
    g = hk.Graph()
    with g.as_default():
        table = hk.text.vocabulary_table(hk.constant(str(path)), num_oov_buckets=2)
        ids = table.lookup(["a", "b", "c"])
    assert table.vocab_size == 4 and table.size() == 6
    assert hk.Session(g).run(ids).tolist() == [0, 1, 3]


@pytest.mark.parametrize(
    "sentences",
    [
        [],
        [""],
        ["the cat sat on the mat", "", "   "],
        ["The CAT, sat!", "dog and mouse", "...", "don't stop"],
        ["naïve café", "日本 語 the", "Ünïcödé cat"],
        ["x" * 300, "a\tb\nc\x0bd\x0ce\rf\x1cg\x1fh"],
        ["_x __ on;on", "12 3.5 -7"],
    ],
)
@pytest.mark.parametrize(("lower", "strip"), [(False, False), (True, False), (False, True), (True, True)])
def test_fused_tokenize_lookup_matches_the_composed_ops(vocab_file, kernels, sentences, lower, strip):
    for kwargs in ({"num_oov_buckets": 3}, {"default_value": -1}):
        got = fused(vocab_file, sentences, lower, strip, **kwargs)
        want = composed(vocab_file, sentences, lower, strip, **kwargs)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == np.int64


def test_all_oov_and_punctuation_only_sentences(vocab_file, kernels):
    ids, rows, n = fused(vocab_file, ["dog mouse", "!!! ,,,", "cat"], strip_punctuation=True, default_value=-1)
    assert ids.tolist() == [-1, -1, 1] and rows.tolist() == [0, 0, 2] and int(n) == 3


def test_missing_vocabulary_file_is_reported(tmp_path):
    with pytest.raises(hk.GraphError, match="does not exist"):
        hk.text.vocabulary_table(str(tmp_path / "nope.txt"))
    g = hk.Graph()
    with g.as_default():
        path = hk.placeholder(hk.string, [])
        table = hk.text.vocabulary_table(path)
        ids = table.lookup(["a"])
    assert table.vocab_size is None
    with pytest.raises(hk.OpError, match="Cannot read vocabulary file"):
        hk.Session(g).run(ids, {path: str(tmp_path / "nope.txt")})


def test_vocabulary_file_fed_at_run_time_is_reloaded_when_it_changes(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("x\ny\n")
    b.write_text("y\nx\n")
    g = hk.Graph()
    with g.as_default():
        path = hk.placeholder(hk.string, [])
        ids = hk.text.vocabulary_table(path).lookup(["x"])
    sess = hk.Session(g)
    assert sess.run(ids, {path: str(a)}).tolist() == [0]
    assert sess.run(ids, {path: str(b)}).tolist() == [1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_oov_buckets": -1}, "num_oov_buckets"), ({"default_value": 1.5}, "default_value")],
)
def test_bad_table_arguments(vocab_file, kwargs, message):
    with pytest.raises(hk.GraphError, match=message):
        hk.text.vocabulary_table(vocab_file, **kwargs)


def test_big_vocabulary_parity_between_kernels(tmp_path):
    """Numba's hash table and the dict give the same ids on a vocabulary with many collisions of slots."""
    from hubkit.ops import _numba

    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefgh"), size=rng.integers(1, 6))) for _ in range(3000)]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(words))
    sentences = [" ".join(rng.choice(words + ["zzz", "qq"], size=rng.integers(0, 30))) for _ in range(200)]
    results = []
    for flag in (False, True):
        _numba.set_numba_enabled(flag)
        try:
            results.append(fused(str(path), sentences, num_oov_buckets=7))
        finally:
            _numba.set_numba_enabled(None)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_a_constant_path_becomes_an_asset_copied_on_export(tmp_path, kernels):
    secret = tmp_path / "secret.txt"
    secret.write_text("root\npassword123\n")

    def module_fn():
        s = hk.placeholder(hk.string, [None], name="s")
        table = hk.text.vocabulary_table(hk.constant(str(secret)))
        hk.add_signature("default", {"s": s}, {"default": table.lookup(s)})

    out = tmp_path / "m"
    hk.Module(hk.create_module_spec(module_fn)).export(str(out))
    assert (out / "assets" / "secret.txt").read_text() == "root\npassword123\n"
    secret.write_text("other\nhunter2\n")  # the module reads its own copy, never the publisher's path
    assert hk.Module(str(out))(["hunter2", "password123", "root"]).tolist() == [-1, 1, 0]


def test_a_computed_vocabulary_path_is_refused(tmp_path, vocab_file):
    g = hk.Graph()
    with g.as_default():
        computed = hk.text.regex_replace(hk.constant(vocab_file), "x", "x")
        with pytest.raises(hk.GraphError, match=r"must come from one of \['AssetPath', 'Placeholder'\]"):
            hk.text.vocabulary_table(computed)
        from hubkit.ops.registry import apply

        for op, first in (("VocabLookup", ["a"]), ("TokenizeLookup", ["a b"])):
            with pytest.raises(hk.GraphError, match=rf"{op} node 'bad': .* from the Const node"):
                apply(op, hk.constant(first), hk.constant(vocab_file), name="bad")


@pytest.mark.parametrize("op", ["VocabLookup", "TokenizeLookup"])
def test_loading_a_module_whose_vocabulary_is_a_constant_path_is_refused(tmp_path, monkeypatch, vocab_file, op):
    """A module written by an older or hostile producer must not read a file of the consumer's machine."""
    from hubkit.ops import text as text_ops
    from hubkit.ops.registry import apply

    def module_fn():
        s = hk.placeholder(hk.string, [None], name="s")
        out = apply(op, s, hk.constant(vocab_file), name="lookup")
        hk.add_signature("default", {"s": s}, {"default": out if op == "VocabLookup" else out[0]})

    with monkeypatch.context() as patch:  # let the producer write the graph the check now refuses
        patch.setattr(text_ops, "_check_vocab_source", lambda *args: None)
        hk.Module(hk.create_module_spec(module_fn)).export(str(tmp_path / "m"))
    with pytest.raises(hk.HubkitError, match=rf"{op} node 'lookup'.* from the Const node"):
        hk.Module(str(tmp_path / "m"))(["the"])


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_a_leading_byte_order_mark_is_not_part_of_the_first_token(tmp_path, kernels, newline):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + newline.join([b"hello", b"world", "日本".encode()]) + newline)
    g = hk.Graph()
    with g.as_default():
        table = hk.text.vocabulary_table(str(path), num_oov_buckets=2)
        ids = table.lookup(["hello", "\ufeffhello", "world", "日本"])
        fused = table.tokenize_and_lookup(["hello world " * 200, "hello"])
    assert table.vocab_size == 3
    got, fused_ids = hk.Session(g).run([ids, fused.values])
    assert got.tolist() == [0, 3 + fingerprint64("\ufeffhello") % 2, 1, 2]
    assert fused_ids.tolist() == [0, 1] * 200 + [0]


def test_a_lone_surrogate_with_oov_buckets_is_a_clear_op_error(vocab_file, kernels):
    with pytest.raises(hk.OpError, match=r"Token 2 'x\\ud800' holds the lone surrogate '\\ud800' at character 1") as e:
        lookup(vocab_file, ["the", "dog", "x\ud800"], num_oov_buckets=3)
    assert "UnicodeEncodeError" not in str(e.value) and "codec" in str(e.value)
    cases = [
        (["the \ud800"], r"Sentence 0, token 1: '\\ud800' holds the lone surrogate"),
        (["a b", "", "cat x\udcff y"], r"Sentence 2, token 1: 'x\\udcff' holds the lone surrogate '\\udcff' at character 1"),
    ]
    for sentences, message in cases:
        with pytest.raises(hk.OpError, match=message) as e:
            fused(vocab_file, sentences, num_oov_buckets=3)
        assert "UnicodeEncodeError" not in str(e.value)
    # Without buckets an unknown token simply gets the default id.
    assert lookup(vocab_file, ["x\ud800"]).tolist() == [-1]
    assert fused(vocab_file, ["the \ud800"])[0].tolist() == [0, -1]
