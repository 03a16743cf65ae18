"""String ops: lower-casing, regex replacement and whitespace tokenization, with their edge cases."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


def run(build, feed=None):
    g = hk.Graph()
    with g.as_default():
        s = hk.placeholder(hk.string, [None], name="s")
        out = build(s)
    return hk.Session(g).run(out, {s: feed})


def test_lower_is_unicode_aware_and_keeps_shape():
    g = hk.Graph()
    with g.as_default():
        s = hk.placeholder(hk.string, [None, 2])
        y = hk.text.lower(s)
    out = hk.Session(g).run(y, {s: [["ÀB", "Straße"], ["", "ΣΑΣ"]]})
    assert out.dtype == object and out.shape == (2, 2)
    assert out.tolist() == [["àb", "straße"], ["", "σας"]]  # final sigma, as str.lower


def test_string_placeholder_accepts_numpy_unicode_and_bytes():
    assert run(hk.text.lower, np.array(["AbC", "D"])).tolist() == ["abc", "d"]
    assert run(hk.text.lower, [b"XY", "z"]).tolist() == ["xy", "z"]


def test_string_placeholder_refuses_numbers():
    with pytest.raises(hk.FeedError, match="expects strings"):
        run(hk.text.lower, [1, 2])


def test_regex_replace_global_first_and_groups():
    assert run(lambda s: hk.text.regex_replace(s, r"[^\w\s]", ""), ["a, b!", "¿qué?"]).tolist() == ["a b", "qué"]
    assert run(lambda s: hk.text.regex_replace(s, "a", "b", replace_global=False), ["aaa"]).tolist() == ["baa"]
    assert run(lambda s: hk.text.regex_replace(s, r"(\w+)@(\w+)", r"\2 at \1"), ["me@home"]).tolist() == [
        "home at me"
    ]


def test_regex_replace_refuses_a_bad_pattern_while_building():
    g = hk.Graph()
    with g.as_default(), pytest.raises(hk.GraphError, match=r"invalid regular expression '\(unclosed'"):
        hk.text.regex_replace(hk.constant(["x"]), "(unclosed", "")


def test_string_ops_refuse_numbers():
    g = hk.Graph()
    with g.as_default(), pytest.raises(hk.GraphError, match="must be a string tensor"):
        hk.text.lower(hk.constant([1.0]))


@pytest.mark.parametrize(
    ("sentences", "tokens", "row_ids"),
    [
        ([], [], []),
        ([""], [], []),
        (["", "   ", "\t\n"], [], []),
        (["a"], ["a"], [0]),
        (["  a  b  "], ["a", "b"], [0, 0]),
        (["x", "", "y z"], ["x", "y", "z"], [0, 2, 2]),
        (["hello, world!"], ["hello,", "world!"], [0, 0]),
        (["naïve café", "日本 語"], ["naïve", "café", "日本", "語"], [0, 0, 1, 1]),
        (["a\u00a0b\u2003c"], ["a", "b", "c"], [0, 0, 0]),  # Unicode spaces split, as str.split()
    ],
)
def test_whitespace_tokenize(sentences, tokens, row_ids):
    def build(s):
        t = hk.text.whitespace_tokenize(s)
        return [t.values, t.row_ids, t.num_rows]

    values, rows, n = run(build, sentences)
    assert values.dtype == object and values.tolist() == tokens
    assert rows.dtype == np.int64 and rows.tolist() == row_ids
    assert int(n) == len(sentences)


def test_whitespace_tokenize_needs_rank_one():
    g = hk.Graph()
    with g.as_default(), pytest.raises(hk.GraphError, match=r"1-D tensor of strings, got \[2, 2\]"):
        hk.text.whitespace_tokenize(hk.constant([["a", "b"], ["c", "d"]]))
