"""The executor: pruning, feeds, nested fetches, plan caching and freeing of intermediates."""

from __future__ import annotations

import weakref

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops.registry import apply, is_registered, register_op

_LIVE: list[weakref.ref] = []
_SEEN: list[bool] = []

if not is_registered("TestTrackedSource"):

    @register_op
    class TestTrackedSource:
        """Test-only: a fresh array whose lifetime the test watches."""

        differentiable = False

        def infer(x):
            return x.dtype, x.shape

        def forward(x):
            out = np.array(x, copy=True)
            _LIVE.append(weakref.ref(out))
            return out

    @register_op
    class TestProbe:
        """Test-only: records whether the last tracked array is still alive when it runs."""

        differentiable = False

        def infer(x):
            return x.dtype, x.shape

        def forward(x):
            _SEEN.append(_LIVE[-1]() is not None)
            return x


def test_unrelated_unfed_placeholder_is_fine(graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    hk.placeholder(hk.float32, [None], name="unused")
    np.testing.assert_allclose(hk.Session(graph).run(x * 2, {x: [1.0]}), [2.0])


def test_missing_feed_names_the_placeholder(graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    y = hk.placeholder(hk.float32, [None], name="needed")
    with pytest.raises(hk.FeedError, match="Placeholder 'needed' must be fed"):
        hk.Session(graph).run(x + y, {x: [1.0]})


def test_fed_intermediate_cuts_the_graph(graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    h = x * 2
    y = h + 1
    np.testing.assert_allclose(hk.Session(graph).run(y, {h: [10.0]}), [11.0])


def test_feed_validation(graph):
    i = hk.placeholder(hk.int32, [None], name="ids")
    f = hk.placeholder(hk.float32, [None, 3], name="f")
    sess = hk.Session(graph)
    with pytest.raises(hk.FeedError, match=r"'ids' has dtype int32; a value of dtype float64 cannot be converted to it safely"):
        sess.run(i + 1, {i: np.array([1.5])})
    with pytest.raises(hk.FeedError, match=r"'f' has shape \[None, 3\]; the value given has shape \[2, 4\]"):
        sess.run(f * 1.0, {f: np.zeros((2, 4))})
    with pytest.raises(hk.FeedError, match="cannot be converted to it safely"):
        sess.run(f * 1.0, {f: np.array([["a", "b", "c"]])})
    out = sess.run(f * 1.0, {f: np.array([[1, 2, 3]], np.int64)})  # ints convert to floats
    assert out.dtype == np.float32


def test_nested_fetches_keep_their_structure(graph):
    x = hk.placeholder(hk.float32, [], name="x")
    a, b = x + 1, x * 3
    out = hk.Session(graph).run({"a": a, "pair": (a, [b, {"b": b}]), "by_name": "x:0"}, {x: 2.0})
    assert set(out) == {"a", "pair", "by_name"}
    assert isinstance(out["pair"], tuple) and isinstance(out["pair"][1], list)
    assert float(out["a"]) == 3 and float(out["pair"][1][1]["b"]) == 6 and float(out["by_name"]) == 2


def test_fetching_an_op_returns_none(graph):
    v = hk.Variable([1.0, 2.0], name="v")
    upd = hk.assign_add(v, [1.0, 1.0])
    assert hk.Session(graph).run(upd) is None
    np.testing.assert_allclose(v.value, [2.0, 3.0])


def test_plans_are_cached_per_fetches_and_feeds(graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    y = x * 2
    sess = hk.Session(graph)
    p1 = sess.plan([y], [x])
    assert sess.plan([y], [x]) is p1
    sess.run(y, {x: [1.0]})
    assert sess.plan([y], [x]) is p1, "run uses the cached plan"
    assert hk.Session(graph).plan([y], [x]) is not p1, "each session owns its plan cache"
    assert sess.plan([y, x], [x]) is not p1
    y2 = y + 1  # a new node: plans are recompiled
    assert sess.plan([y], [x]) is not p1
    np.testing.assert_allclose(sess.run(y2, {x: [1.0]}), [3.0])


def test_intermediates_are_freed_after_last_use(graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    a = apply("TestTrackedSource", x)
    b = a * 2.0
    c = apply("TestProbe", b + 1.0)
    _SEEN.clear()
    np.testing.assert_allclose(hk.Session(graph).run(c, {x: np.ones(1000, np.float32)}), np.full(1000, 3.0))
    assert _SEEN == [False], "the tracked array must be freed once its last consumer ran"
    plan = hk.Session(graph).plan([c], [x])
    freed = {s for step in plan.steps for s in step.frees}
    assert freed, "the plan frees slots"


def test_fetched_intermediates_are_kept(graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    a = apply("TestTrackedSource", x)
    c = apply("TestProbe", a * 2.0 + 1.0)
    _SEEN.clear()
    got_a, _ = hk.Session(graph).run([a, c], {x: [1.0]})
    assert _SEEN == [True]
    np.testing.assert_allclose(got_a, [1.0])


def test_fetched_variable_and_views_are_copies(graph):
    v = hk.Variable(np.zeros((2, 2), np.float32), name="w")
    t = v.tensor(graph)
    got, view = hk.Session(graph).run([t, hk.reshape(t, [-1])])
    got[0, 0] = 5
    view[0] = 7
    assert v.value[0, 0] == 0


def test_kernel_failure_is_an_op_error_naming_the_node(graph):
    x = hk.placeholder(hk.float32, None, name="x")
    y = hk.reshape(x, [3, -1], name="bad_reshape")
    with pytest.raises(hk.OpError, match="Reshape node 'bad_reshape' failed"):
        hk.Session(graph).run(y, {x: np.zeros(4)})


def test_run_with_intermediates(graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    h = hk.multiply(x, 2.0, name="h")
    y = h + 1
    out, inter = hk.Session(graph).run_with_intermediates(y, {x: [1.0]})
    np.testing.assert_allclose(out, [3.0])
    np.testing.assert_allclose(inter["h:0"], [2.0])
