"""Vocabulary tables and string ops given the wrong file, tensor or argument raise errors naming it."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("the\ncat\n", encoding="utf-8")
    return str(path)


def test_the_size_of_a_table_fed_its_path_at_run_time_is_unknown(graph):
    table = hk.text.vocabulary_table(hk.placeholder(hk.string, [], name="path"))
    assert table.vocab_size is None
    with pytest.raises(
        hk.GraphError, match="vocabulary size is unknown: the file path is only known when the graph runs"
    ):
        table.size()


@pytest.mark.parametrize(
    "make",
    [
        lambda: hk.placeholder(hk.string, [2], name="paths"),
        lambda: hk.placeholder(hk.int64, [], name="number"),
    ],
)
def test_a_file_tensor_must_be_a_string_scalar(graph, make):
    t = make()
    with pytest.raises(hk.GraphError, match=rf"must be a string scalar tensor, got '{t.name}'"):
        hk.text.vocabulary_table(t)


@pytest.mark.parametrize("asset", [42, None, b"vocab.txt", ["vocab.txt"]])
def test_a_file_that_is_neither_a_path_nor_a_tensor_is_refused(graph, asset):
    with pytest.raises(hk.GraphError, match=r"must be a path or a string tensor from hubkit.add_asset, got"):
        hk.text.vocabulary_table(asset)


def test_a_file_that_is_not_utf8_is_refused_when_the_table_is_made(graph, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(
        hk.GraphError, match=r"Cannot use vocabulary file '.*latin1.txt': .* is not UTF-8 text"
    ):
        hk.text.vocabulary_table(str(path))


def run_lookup(path_value):
    g = hk.Graph()
    with g.as_default():
        path = hk.placeholder(hk.string, [], name="path")
        ids = hk.text.vocabulary_table(path).lookup(["the"])
    return hk.Session(g).run(ids, {path: path_value})


def test_a_file_fed_at_run_time_that_is_not_utf8_is_an_op_error(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9\n")
    with pytest.raises(hk.OpError, match=r"Vocabulary file '.*latin1.txt' is not UTF-8 text"):
        run_lookup(str(path))


def test_a_directory_fed_as_the_file_cannot_be_read(tmp_path):
    with pytest.raises(hk.OpError, match=r"Cannot read vocabulary file '.*': Is a directory"):
        run_lookup(str(tmp_path))


def test_a_table_made_directly_checks_its_arguments_when_used(graph, vocab_file):
    good = hk.text.vocabulary_table(vocab_file)
    for kwargs, message in [
        ({"num_oov_buckets": -2, "default_value": -1}, "num_oov_buckets must be an integer >= 0, got -2"),
        ({"num_oov_buckets": 0, "default_value": "x"}, "default_value must be an integer, got 'x'"),
    ]:
        table = hk.text.VocabularyTable(good.vocab_file, vocab_size=2, **kwargs)
        with pytest.raises(hk.GraphError, match=rf"VocabLookup node 'VocabLookup.*': {message}"):
            table.lookup(["the"])
        with pytest.raises(hk.GraphError, match=rf"TokenizeLookup node 'TokenizeLookup.*': {message}"):
            table.tokenize_and_lookup(["the cat"])


def test_lookup_needs_string_tokens(graph, vocab_file):
    table = hk.text.vocabulary_table(vocab_file)
    ints = hk.constant(np.array([1, 2], np.int64), name="ints")
    with pytest.raises(hk.GraphError, match=r"VocabLookup tokens must be a string tensor, got .*ints"):
        table.lookup(ints)
    with pytest.raises(hk.GraphError, match=r"TokenizeLookup sentences must be a string tensor"):
        table.tokenize_and_lookup(ints)


def test_tokenize_and_lookup_needs_one_sentence_per_row(graph, vocab_file):
    table = hk.text.vocabulary_table(vocab_file)
    with pytest.raises(hk.GraphError, match=r"TokenizeLookup needs a 1-D tensor of strings, got \[2, 1\]"):
        table.tokenize_and_lookup(hk.placeholder(hk.string, [2, 1]))


def test_whitespace_tokenize_needs_one_sentence_per_row(graph):
    with pytest.raises(hk.GraphError, match=r"WhitespaceTokenize needs a 1-D tensor of strings, got \[\]"):
        hk.text.whitespace_tokenize(hk.placeholder(hk.string, []))


def test_a_bad_regular_expression_names_the_pattern(graph):
    with pytest.raises(hk.GraphError, match=r"invalid regular expression '\(unclosed': missing \)"):
        hk.text.regex_replace(hk.placeholder(hk.string, [None]), "(unclosed", "")
