"""TF semantics of the TF-exact ops, against values recorded from TensorFlow 2.21 or worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.errors import FormatError
from hubkit.ops._farmhash import fingerprint64
from hubkit.ops.registry import apply
from hubkit.ops.tf_text import read_text_file_table


def run(op, *inputs, **attrs):
    g = hk.Graph()
    with g.as_default():
        out = apply(op, *inputs, **attrs)
    return hk.Session(g).run(list(out) if isinstance(out, tuple) else out)


def strings(*values):
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


# Recorded with tf.fingerprint(..., method="farmhash64") and tf.strings.to_hash_bucket_fast(..., 1000).
FINGERPRINTS = [
    (b"", 0x9AE16A3B2F90404F, 263), (b"a", 0xB3454265B6DF75E3, 939), (b"abc", 0x24A5B3A074E7F369, 385),
    (b"hello", 0xB48BE5A931380CE8, 296), ("café".encode(), 0x9DEBABB64841BD83, 587),
    (b"0123456789abcdef0", 0x6DEB36B4A021A909, 889), (b"x" * 40, 0xEBF8E8AEAC993C94, 852),
    (b"The quick brown fox jumps over the lazy dog, twice: the quick brown fox!", 0x79BC4206E9ACBFD4, 204),
]


@pytest.mark.parametrize("data, fingerprint, bucket", FINGERPRINTS)
def test_farmhash_fingerprint64_and_hash_buckets_match_tensorflow(data, fingerprint, bucket):
    assert fingerprint64(data) == fingerprint
    out = run("TfStringToHashBucketFast", strings(data.decode()), num_buckets=1000)
    assert out.tolist() == [bucket]


def test_string_split_splits_on_any_delimiter_byte_and_skips_empty_tokens():
    indices, values, shape = run("TfStringSplit", strings("a  b", "", " x,y "), np.array(" ,", dtype=object))
    assert values.tolist() == ["a", "b", "x", "y"]
    assert indices.tolist() == [[0, 0], [0, 1], [2, 0], [2, 1]]
    assert shape.tolist() == [3, 2]
    _, values, _ = run("TfStringSplit", strings("ab"), np.array("", dtype=object))
    assert values.tolist() == ["a", "b"]


@pytest.mark.parametrize("sep, maxsplit, values, indices, shape", [  # recorded from TF's string_split_v2
    ("", -1, ["a", "b", "c", "x,,y,", "1ab2abab3"], [[0, 0], [0, 1], [0, 2], [2, 0], [3, 0]], [4, 3]),
    (" ", -1, ["", "", "a", "b", "", "c", "", "", "x,,y,", "1ab2abab3"],
     [[0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [0, 5], [0, 6], [1, 0], [2, 0], [3, 0]], [4, 7]),
    (",", 1, ["  a b  c ", "", "x", ",y,", "1ab2abab3"], [[0, 0], [1, 0], [2, 0], [2, 1], [3, 0]], [4, 2]),
    ("ab", -1, ["  a b  c ", "", "x,,y,", "1", "2", "", "3"],
     [[0, 0], [1, 0], [2, 0], [3, 0], [3, 1], [3, 2], [3, 3]], [4, 4]),
])
def test_string_split_v2_matches_tensorflow(sep, maxsplit, values, indices, shape):
    out = run("TfStringSplitV2", strings("  a b  c ", "", "x,,y,", "1ab2abab3"), np.array(sep, dtype=object),
              maxsplit=maxsplit)
    assert out[1].tolist() == values and out[0].tolist() == indices and out[2].tolist() == shape
    _, vals, _ = run("TfStringSplitV2", strings("a\u00a0b c"), np.array("", dtype=object))
    assert vals.tolist() == ["a\u00a0b", "c"]  # only ASCII whitespace separates


def test_string_lower_is_ascii_only_by_default():
    assert run("TfStringLower", strings("ÀBC É")).tolist() == ["Àbc É"]
    assert run("TfStringLower", strings("ÀBC É"), encoding="utf-8").tolist() == ["àbc é"]


def test_regex_replace_uses_re2_syntax_and_rewrites():
    assert run("TfStaticRegexReplace", strings("Hello, world! ¿qué?"), pattern=r"\pP", rewrite="").tolist() == \
        ["Hello world qué"]
    assert run("TfStaticRegexReplace", strings("hello world"), pattern=r"(\w)(\w*)", rewrite=r"\2\1\0").tolist() == \
        ["ellohhello orldwworld"]
    assert run("TfStaticRegexReplace", strings("abc"), pattern="x*", rewrite="-").tolist() == ["-a-b-c-"]
    assert run("TfStaticRegexReplace", strings("aaa"), pattern="a", rewrite="b", replace_global=False).tolist() == \
        ["baa"]


def _table(path, **overrides):
    attrs = {"key_index": -2, "value_index": -1, "vocab_size": -1, "delimiter": "\t", "key_dtype": hk.string,
             "value_dtype": hk.int64, **overrides}
    return read_text_file_table(str(path), **attrs)


def test_text_file_table_line_ends(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"a\nb\r\nc\rd\ne\r")
    table = _table(path)
    assert table == {"a": 0, "b": 1, "c\rd": 2, "e": 3}  # as TF: [0, -1, 1, 2, 3, -1, -1] for a,'',b,c\rd,e,b\r,e\r
    path.write_bytes(b"a\n\r\nb\n")
    with pytest.raises(FormatError, match="line 2 is empty"):
        _table(path)
    path.write_bytes(b"a\nb\na\n")
    with pytest.raises(FormatError, match="repeats the key 'a'"):
        _table(path)
    path.write_bytes(b"x\t7\ny\t9\n")
    assert _table(path, key_index=0, value_index=1) == {"x": 7, "y": 9}
    assert _table(path, vocab_size=1, value_index=-1) == {"x\t7": 0}


def test_strided_slice_masks():
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.float32)
    i32 = lambda *v: np.array(v, np.int32)  # noqa: E731
    out = run("TfStridedSlice", x, i32(0, 1), i32(0, 3), i32(1, 1), begin_mask=0, end_mask=0, ellipsis_mask=1,
              new_axis_mask=0, shrink_axis_mask=0)
    np.testing.assert_array_equal(out, x[..., 1:3])
    out = run("TfStridedSlice", x, i32(0, 0, 2), i32(0, 0, 3), i32(1, 1, 1), begin_mask=1, end_mask=1,
              ellipsis_mask=0, new_axis_mask=2, shrink_axis_mask=4)
    np.testing.assert_array_equal(out, x[:, None, 2])
    out = run("TfStridedSlice", x, i32(0, 5), i32(0, 0), i32(1, -2), begin_mask=1, end_mask=3, ellipsis_mask=0,
              new_axis_mask=0, shrink_axis_mask=0)
    np.testing.assert_array_equal(out, x[:, ::-2])


def test_select_v1_picks_rows_and_select_v2_broadcasts():
    a, b = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    np.testing.assert_array_equal(run("TfSelect", np.array([True, False]), a, b), [[1, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(run("Select", np.array([True, False, True]), a, b), [[1, 0, 1], [1, 0, 1]])


def test_sparse_segment_sqrtn_rows_follow_the_last_segment_id():
    data = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = run("TfSparseSegmentReduce", data, np.array([0, 2, 1], np.int64), np.array([0, 0, 2], np.int64),
              reduction="sqrtn")
    np.testing.assert_allclose(out, [(data[0] + data[2]) / np.sqrt(2), [0, 0], data[1]], rtol=1e-6)


def test_sparse_fill_empty_rows_and_unique():
    idx, vals, empty, reverse = run("TfSparseFillEmptyRows", np.array([[0, 0], [2, 1], [2, 0]], np.int64),
                                    np.array([5, 6, 7], np.int64), np.array([4, 3], np.int64), np.int64(-1))
    assert idx.tolist() == [[0, 0], [1, 0], [2, 1], [2, 0], [3, 0]]
    assert vals.tolist() == [5, -1, 6, 7, -1] and empty.tolist() == [False, True, False, True]
    assert reverse.tolist() == [0, 2, 3]
    y, i = run("TfUnique", np.array([3, 1, 3, 2, 1], np.int64), out_idx=hk.int32)
    assert y.tolist() == [3, 1, 2] and i.tolist() == [0, 1, 0, 2, 1]


def test_conv_same_padding_puts_the_odd_pixel_after():
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    w = np.ones((2, 2, 1, 1))
    out = run("TfConv2D", x, w, depthwise=False, strides=[1, 2, 2, 1], padding="SAME", explicit_paddings=[],
              dilations=[1, 1, 1, 1], data_format="NHWC")
    # stride 2 on 4 pixels with a 2-tap filter needs no padding: windows start at 0 and 2
    np.testing.assert_array_equal(out[0, :, :, 0], [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])
    out = run("TfConv2D", x[:, :3, :3], w, depthwise=False, strides=[1, 1, 1, 1], padding="SAME",
              explicit_paddings=[], dilations=[1, 1, 1, 1], data_format="NHWC")
    assert out.shape == (1, 3, 3, 1) and out[0, 2, 2, 0] == 10  # padded after: the last window holds only x[2, 2]


def test_sparse_fill_empty_rows_without_empty_rows_returns_its_input():
    indices = np.array([[0, 0], [0, 1], [1, 0], [2, 0], [2, 1]], np.int64)
    idx, vals, empty, reverse = run("TfSparseFillEmptyRows", indices, np.array([1, 2, 3, 4, 5], np.int64),
                                    np.array([3, 2], np.int64), np.int64(-1))
    assert idx.tolist() == indices.tolist() and vals.tolist() == [1, 2, 3, 4, 5]
    assert empty.tolist() == [False] * 3 and reverse.tolist() == [0, 1, 2, 3, 4]
    idx, _, _, reverse = run("TfSparseFillEmptyRows", indices[[2, 0, 1, 3, 4]], np.array([3, 1, 2, 4, 5], np.int64),
                             np.array([3, 2], np.int64), np.int64(-1))
    assert idx.tolist() == [[0, 0], [0, 1], [1, 0], [2, 0], [2, 1]] and reverse.tolist() == [2, 0, 1, 3, 4]


def test_regex_replace_fast_path_agrees_with_the_re2_module():
    import re2

    from hubkit.ops import tf_text

    rng = np.random.default_rng(0)
    alphabet = list("ab xyz,.!é€😀\t") + ["\u00a0", "aa", "ba"]
    for pattern in ["x*", r"\pP", "(a)(b)?", "", "^", "$", r"\s+", "[aeiou]+", "a|", r"(\w+)\s(\w+)", "(é)|(€)"]:
        rx = re2.compile(pattern)
        for rewrite in ["-", r"<\0>", r"[\1]"]:
            if rx.groups < 1 and "1" in rewrite:
                continue
            parts = tf_text._rewrite_parts(rewrite)

            def repl(m, parts=parts):
                return "".join(p if isinstance(p, str) else (m.group(p) or "") for p in parts)

            for _ in range(15):
                s = "".join(rng.choice(alphabet, size=int(rng.integers(0, 10))))
                for count in (0, 1):
                    got = tf_text._sub_bytes(rx._regexp, s.encode(), parts, count).decode()
                    assert got == rx.sub(repl, s, count=count), (pattern, rewrite, s, count)


def test_regex_rewrite_naming_a_missing_group_is_refused_when_built():
    with pytest.raises(hk.GraphError, match="uses group 2, but the pattern has only 1"):
        run("TfStaticRegexReplace", strings("ab"), pattern="(a)", rewrite=r"\2")
