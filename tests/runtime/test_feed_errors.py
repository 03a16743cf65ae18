"""Feeds that would give silently wrong results are refused with errors naming the tensor."""

import numpy as np
import pytest

import hubkit as hk


@pytest.fixture
def doubled(graph):
    x = hk.placeholder(hk.float32, [1, 4], name="x")
    return graph, x, x * 2.0


def test_feeding_one_tensor_twice_is_refused(doubled):
    graph, x, y = doubled
    with pytest.raises(hk.FeedError, match=r"'x:0' is fed twice"):
        hk.Session(graph).run(y, {x: np.ones((1, 4)), "x:0": np.zeros((1, 4))})


def test_a_fetched_tensor_that_is_fed_comes_back_as_fed(doubled):
    graph, _, y = doubled
    out = hk.Session(graph).run(y, {y: np.full((1, 4), 7.0)})
    np.testing.assert_array_equal(out, np.full((1, 4), 7.0, np.float32))


def test_feed_from_another_graph_is_named_as_a_feed(doubled):
    graph, _, y = doubled
    other = hk.Graph()
    with other.as_default():
        foreign = hk.placeholder(hk.float32, [1, 4])
    with pytest.raises(hk.GraphError, match="Feed 'Placeholder:0' belongs to another graph"):
        hk.Session(graph).run(y, {foreign: np.ones((1, 4))})


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array([2**40]), "the value 1099511627776 is outside"),
        (np.array([2**64 - 1], np.uint64), "is outside"),
        ([1.5], "float64 cannot be converted to it safely"),
        (["a"], "cannot be converted to it safely"),
    ],
)
def test_int_feeds_never_wrap_or_truncate(graph, value, match):
    i = hk.placeholder(hk.int32, [None], name="i")
    with pytest.raises(hk.FeedError, match=match):
        hk.Session(graph).run(i, {i: value})


def test_narrowing_int_feeds_that_fit_are_accepted(graph):
    i = hk.placeholder(hk.int32, [None], name="i")
    out = hk.Session(graph).run(i, {i: np.array([5, -7], np.int64)})
    assert out.dtype == np.int32 and out.tolist() == [5, -7]


def test_string_feeds_decode_bytes_without_touching_the_callers_array(graph):
    s = hk.placeholder(hk.string, [None], name="s")
    given = np.array([b"caf\xc3\xa9", "x"], dtype=object)
    assert hk.Session(graph).run(s, {s: given}).tolist() == ["café", "x"]
    assert given[0] == b"caf\xc3\xa9"
    with pytest.raises(hk.FeedError, match="expects UTF-8 text; element 0"):
        hk.Session(graph).run(s, {s: [b"\xff"]})
