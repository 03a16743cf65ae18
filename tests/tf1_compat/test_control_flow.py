"""Control flow as in TensorFlow 1: cond, while_loop, map_fn, foldl, foldr, scan; gradients, export, modules."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import hubkit as hk
from hubkit.format import marker
from tests.helpers_fd import check_vjp, cover

cover("hubkit.runtime.control_flow", ["If", "While", "Scan"])

_r = np.random.default_rng(7)


def _run(fetches, feed=None, graph=None):
    return hk.Session(graph or hk.get_default_graph()).run(fetches, feed)


# -- forward semantics ------------------------------------------------------------------------------------
def test_cond_takes_one_branch_and_only_runs_it():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [])
        bad = hk.placeholder(hk.float32, [None])
        # The false branch would fail (reshape of 1 value into 2x2) if it ran.
        out = hk.cond(x > 0.0, lambda: x * 2.0, lambda: hk.reduce_sum(hk.reshape(bad, [2, 2])) + x)
        sess = hk.Session(g)
        assert sess.run(out, {x: 3.0, bad: [1.0]}) == 6.0
        with pytest.raises(hk.OpError):
            sess.run(out, {x: -3.0, bad: [1.0]})


def test_cond_nested_structures_and_python_values():
    g = hk.Graph()
    with g.as_default():
        p = hk.placeholder(hk.bool, [])
        out = hk.cond(p, lambda: {"a": hk.constant(1.0), "b": (hk.constant(2), 3)},
                      lambda: {"a": hk.constant(5.0), "b": (hk.constant(6), 7)})
        assert sorted(out) == ["a", "b"] and isinstance(out["b"], tuple)
        assert _run(out, {p: True}, g) == {"a": 1.0, "b": (2, 3)}
        assert _run(out, {p: False}, g) == {"a": 5.0, "b": (6, 7)}


def test_cond_branches_must_agree():
    with hk.Graph().as_default():
        p = hk.placeholder(hk.bool, [])
        with pytest.raises(hk.GraphError, match="structure"):
            hk.cond(p, lambda: (1.0, 2.0), lambda: 1.0)
        with pytest.raises(hk.GraphError, match="float32 in true_fn but int32"):
            hk.cond(p, lambda: hk.constant(1.0), lambda: hk.constant(1))
        with pytest.raises(hk.GraphError, match="bool scalar"):
            hk.cond(hk.constant(1.0), lambda: 1.0, lambda: 2.0)


def test_while_loop_nested_loop_vars_and_namedtuple():
    Pair = collections.namedtuple("Pair", ["i", "acc"])
    g = hk.Graph()
    with g.as_default():
        out = hk.while_loop(lambda i, acc: i < 5, lambda i, acc: Pair(i + 1, acc * 2.0),
                            Pair(hk.constant(0), hk.constant(1.0)))
        assert isinstance(out, Pair)
        i, acc = _run([out.i, out.acc], graph=g)
    assert i == 5 and acc == 32.0


def test_while_loop_single_var_is_unpacked_and_100000_iterations():
    g = hk.Graph()
    with g.as_default():
        i = hk.while_loop(lambda i: i < 100_000, lambda i: i + 1, [hk.constant(0)])
        assert isinstance(i, hk.Tensor)
        same = hk.while_loop(lambda i: i < 3, lambda i: [i + 1], [hk.constant(0)], return_same_structure=True)
        assert isinstance(same, list)
    assert _run(i, graph=g) == 100_000


def test_while_loop_maximum_iterations_bounds_the_loop():
    g = hk.Graph()
    with g.as_default():
        n = hk.placeholder(hk.int32, [])
        out = hk.while_loop(lambda i: i < 100, lambda i: i + 1, [hk.constant(0)], maximum_iterations=n)
    assert _run(out, {n: 7}, g) == 7
    assert _run(out, {n: 1000}, g) == 100
    assert _run(out, {n: 0}, g) == 0


def test_while_loop_shape_invariants():
    g = hk.Graph()
    with g.as_default():
        x = hk.constant(np.zeros((1, 2), np.float32))
        with pytest.raises(hk.GraphError, match="shape_invariants"):
            hk.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, hk.concat([x, x], 0)), [hk.constant(0), x])
        _, out = hk.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, hk.concat([x, x], 0)),
                               [hk.constant(0), x], shape_invariants=[[], [None, 2]])
        assert out.shape == (None, 2)
    assert _run(out, graph=g).shape == (8, 2)


def test_while_loop_errors_name_the_problem():
    with hk.Graph().as_default():
        i = hk.constant(0)
        with pytest.raises(hk.GraphError, match="float32"):
            hk.while_loop(lambda i: i < 3, lambda i: hk.cast(i, hk.float32), [i])
        with pytest.raises(hk.GraphError, match="structure"):
            hk.while_loop(lambda i, j: i < 3, lambda i, j: i + 1, [i, i])
        with pytest.raises(hk.GraphError, match="callable"):
            hk.while_loop(None, lambda i: i, [i])


def test_map_fn_foldl_foldr_scan_against_numpy():
    a = _r.standard_normal((5, 3)).astype(np.float32)
    g = hk.Graph()
    with g.as_default():
        x = hk.constant(a)
        mapped = hk.map_fn(lambda row: hk.reduce_sum(row * row), x)
        pair = hk.map_fn(lambda r: (r[0], r[1] * 2.0), (x, x), dtype=(hk.float32, hk.float32))
        fl = hk.foldl(lambda acc, row: acc * 0.5 + row, x)
        fl0 = hk.foldl(lambda acc, row: acc + hk.reduce_sum(row), x, initializer=hk.constant(10.0))
        fr = hk.foldr(lambda acc, row: acc * 0.5 + row, x)
        sc = hk.scan(lambda acc, row: acc + row, x)
        scr = hk.scan(lambda acc, row: acc + row, x, initializer=hk.constant(np.ones(3, np.float32)), reverse=True)
        res = _run([mapped, pair, fl, fl0, fr, sc, scr], graph=g)
    np.testing.assert_allclose(res[0], (a * a).sum(1), rtol=1e-6)
    np.testing.assert_allclose(res[1][0], a, rtol=1e-6)
    np.testing.assert_allclose(res[1][1], a * 2, rtol=1e-6)
    acc = a[0]
    for row in a[1:]:
        acc = acc * 0.5 + row
    np.testing.assert_allclose(res[2], acc, rtol=1e-6)
    np.testing.assert_allclose(res[3], 10.0 + a.sum(), rtol=1e-5)
    acc = a[-1]
    for row in a[-2::-1]:
        acc = acc * 0.5 + row
    np.testing.assert_allclose(res[4], acc, rtol=1e-6)
    np.testing.assert_allclose(res[5], np.cumsum(a, 0), rtol=1e-6)
    np.testing.assert_allclose(res[6], 1.0 + np.cumsum(a[::-1], 0)[::-1], rtol=1e-5)


def test_map_fn_over_zero_rows_and_dtype_check():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        out = hk.map_fn(lambda r: r * 2.0, x)
        with pytest.raises(hk.GraphError, match="dtype"):
            hk.map_fn(lambda r: r * 2.0, x, dtype=hk.int32)
    assert _run(out, {x: np.zeros((0, 3), np.float32)}, g).shape == (0, 3)


def test_nested_control_flow_loop_in_branch_in_loop():
    g = hk.Graph()
    with g.as_default():
        n = hk.placeholder(hk.int32, [])

        def outer_body(i, total):
            def inner():
                return hk.while_loop(lambda j, s: j < i, lambda j, s: (j + 1, s + 1.0), [hk.constant(0), total])[1]

            return i + 1, hk.cond(i < 3, inner, lambda: total - 1.0)

        _, out = hk.while_loop(lambda i, t: i < n, outer_body, [hk.constant(0), hk.constant(0.0)])
    # i = 0, 1, 2 add i; i = 3, 4 subtract 1: 0 + 1 + 2 - 1 - 1 = 1
    assert _run(out, {n: 5}, g) == 1.0


# -- gradients against finite differences -------------------------------------------------------------------
def test_cond_gradient_matches_finite_differences():
    def fn(x, w):
        return hk.cond(hk.reduce_sum(x) > 0.0, lambda: x * w * w, lambda: hk.tanh(x) + w)

    check_vjp(fn, [np.array([0.5, 1.0, 2.0]), np.array([0.3, -0.7, 1.1])], ops=["If"])
    check_vjp(fn, [np.array([-0.5, -1.0, 0.2]), np.array([0.3, -0.7, 1.1])], ops=["If"])


def test_while_loop_gradient_matches_finite_differences():
    def fn(x, w):
        def body(i, h):
            return i + 1, hk.tanh(hk.matmul(h, w)) + h * 0.5

        return hk.while_loop(lambda i, h: i < 4, body, [hk.constant(0), x])[1]

    check_vjp(fn, [_r.standard_normal((2, 3)), _r.standard_normal((3, 3)) * 0.5], ops=["While"])


def test_while_loop_gradient_with_maximum_iterations_and_nested_cond():
    def fn(x):
        def body(h):
            return hk.cond(hk.reduce_sum(h) > 1.0, lambda: h * 0.9, lambda: h * h + 0.5)

        return hk.while_loop(lambda h: hk.reduce_sum(h) < 100.0, body, [x], maximum_iterations=5)

    check_vjp(fn, [np.array([0.2, 0.3])], ops=["While"])


def test_scan_family_gradients_match_finite_differences():
    check_vjp(lambda x, w: hk.map_fn(lambda r: hk.reduce_sum(hk.exp(r * w)), x),
              [_r.standard_normal((4, 3)), _r.standard_normal(3)], ops=["Scan"])
    check_vjp(lambda x, c: hk.foldl(lambda a, r: a * hk.tanh(r) + c, x, initializer=hk.ones_like(c)),
              [_r.standard_normal((4, 3)), _r.standard_normal(3)], ops=["Scan"])
    check_vjp(lambda x: hk.scan(lambda a, r: a * r + 1.0, x, reverse=True), [_r.standard_normal((4, 2))], ops=["Scan"])


def test_second_order_through_cond():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float64, [])
        y = hk.cond(x > 0.0, lambda: x * x * x, lambda: x)
        (dx,) = hk.gradients(y, [x])
        (ddx,) = hk.gradients(dx, [x])
    assert _run(ddx, {x: 2.0}, g) == pytest.approx(12.0)


def test_gradient_reaches_variables_read_inside_the_body():
    g = hk.Graph()
    with g.as_default():
        w = hk.get_variable("w", initializer=np.float32(0.5), shape=[])
        out = hk.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, x * w), [hk.constant(0), hk.constant(2.0)])[1]
        (dw,) = hk.gradients(out, [w])
    # out = 2 w^3; d/dw = 6 w^2
    assert _run(dw, graph=g) == pytest.approx(1.5)


# -- variables, modules, export -----------------------------------------------------------------------------
def test_get_variable_inside_a_loop_body_lives_in_the_outer_graph():
    g = hk.Graph()
    with g.as_default():
        def body(i, x):
            with hk.variable_scope("cell", reuse=hk.AUTO_REUSE):
                v = hk.get_variable("v", [], initializer=hk.initializers.constant(2.0))
            return i + 1, x * v

        out = hk.while_loop(lambda i, x: i < 3, body, [hk.constant(0), hk.constant(1.0)])[1]
        names = [v.name for v in hk.get_collection(hk.GraphKeys.GLOBAL_VARIABLES)]
    assert names == ["cell/v"]
    assert _run(out, graph=g) == 8.0


def _dense_module_fn():
    x = hk.placeholder(hk.float32, [None, 2])
    hk.add_signature(inputs=x, outputs=hk.layers.dense(x, 2, name="d"))


def test_module_applied_in_loop_body_map_fn_and_branch_shares_variables():
    m = hk.Module(hk.create_module_spec(_dense_module_fn), trainable=True)
    x0 = _r.standard_normal((3, 2)).astype(np.float32)
    g = hk.Graph()
    with g.as_default():
        x = hk.constant(x0)
        looped = hk.while_loop(lambda i, h: i < 2, lambda i, h: (i + 1, m(h)), [hk.constant(0), x])[1]
        mapped = hk.map_fn(lambda r: m(hk.expand_dims(r, 0))[0], x)
        branched = hk.cond(hk.constant(True), lambda: m(x), lambda: x)
        direct = m(x)
        assert len(hk.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES)) == 2
        loss = hk.reduce_sum(looped) + hk.reduce_sum(mapped) + hk.reduce_sum(branched)
        grads = hk.gradients(loss, m.trainable_variables)
        assert all(gr is not None for gr in grads)
        res = _run([looped, mapped, branched, direct], graph=g)
    once = m(x0)
    np.testing.assert_allclose(res[0], m(once), rtol=1e-5)
    np.testing.assert_allclose(res[1], once, rtol=1e-5)
    np.testing.assert_allclose(res[2], once, rtol=1e-5)
    np.testing.assert_allclose(res[3], once, rtol=1e-5)


def control_flow_module_fn():
    """A module with a loop (holding a cond) and a map_fn: its functions go to graph.pb."""
    x = hk.placeholder(hk.float32, [None, 3], name="x")
    w = hk.get_variable("w", [3, 3], initializer=hk.initializers.constant(np.eye(3, dtype=np.float32) * 0.5))

    def body(i, h):
        return i + 1, hk.cond(i < 1, lambda: hk.matmul(h, w), lambda: h + 1.0)

    _, out = hk.while_loop(lambda i, h: i < 3, body, [hk.constant(0), x])
    norms = hk.map_fn(lambda r: hk.reduce_sum(r * r), out)
    hk.add_signature(inputs=x, outputs={"default": out, "norms": norms})


def _reference(x, w):
    h = x @ w
    return h + 2.0


def test_control_flow_module_exports_loads_and_requires_the_feature(tmp_path, monkeypatch):
    spec = hk.create_module_spec(control_flow_module_fn)
    m = hk.Module(spec)
    x = _r.standard_normal((2, 3)).astype(np.float32)
    w = np.eye(3, dtype=np.float32) * 0.5
    np.testing.assert_allclose(m(x), _reference(x, w), rtol=1e-6)
    m.export(str(tmp_path / "m"))
    assert list(marker.read_marker(str(tmp_path / "m")).required_features) == ["control_flow"]
    loaded = hk.Module(str(tmp_path / "m"))
    out = loaded(x, as_dict=True)
    np.testing.assert_allclose(out["default"], _reference(x, w), rtol=1e-6)
    np.testing.assert_allclose(out["norms"], (_reference(x, w) ** 2).sum(1), rtol=1e-5)
    # A hubkit without control flow refuses it by name.
    monkeypatch.setattr(marker, "SUPPORTED_FEATURES", frozenset())
    with pytest.raises(hk.FormatError, match="control_flow"):
        hk.Module(str(tmp_path / "m"))


def test_plain_module_requires_no_feature(tmp_path):
    hk.Module(hk.create_module_spec(_dense_module_fn)).export(str(tmp_path / "p"))
    assert list(marker.read_marker(str(tmp_path / "p")).required_features) == []


def test_fine_tuning_through_a_loop_reduces_the_loss():
    m = hk.Module(hk.create_module_spec(control_flow_module_fn), trainable=True)
    x0 = _r.standard_normal((4, 3)).astype(np.float32)
    target = np.zeros((4, 3), np.float32)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        loss = hk.reduce_mean(hk.square(m(x) - target))
        train = hk.train.GradientDescent(0.05).minimize(loss)
        sess = hk.Session(g)
        before = sess.run(loss, {x: x0})
        for _ in range(5):
            sess.run(train, {x: x0})
        after = sess.run(loss, {x: x0})
    assert after < before


def _regularized_module_fn():
    x = hk.placeholder(hk.float32, [None, 2])
    hk.add_signature(inputs=x, outputs=hk.layers.dense(x, 2, kernel_regularizer=hk.regularizers.l2(0.1), name="d"))


def test_losses_made_inside_a_body_stay_out_of_the_outer_collections():
    m = hk.Module(hk.create_module_spec(_regularized_module_fn), trainable=True)
    g = hk.Graph()
    with g.as_default():
        x = hk.constant(np.ones((1, 2), np.float32))
        out = hk.while_loop(lambda i, h: i < 2, lambda i, h: (i + 1, m(h)), [hk.constant(0), x])[1]
        losses = hk.get_collection(hk.GraphKeys.REGULARIZATION_LOSSES)
        assert all(t.graph is g for t in losses)
        assert len(hk.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES)) == 2
        hk.Session(g).run([out, losses])


def test_a_kernel_failing_inside_a_loop_names_its_node():
    g = hk.Graph()
    with g.as_default():
        ids = hk.constant(np.array([0, 1, 7], np.int64))
        table = hk.constant(np.zeros((3, 2), np.float32))

        def body(i, acc):
            return i + 1, acc + hk.gather(table, ids[i], name="lookup")

        out = hk.while_loop(lambda i, acc: i < 3, body, [hk.constant(0), hk.constant(np.zeros(2, np.float32))])[1]
    with pytest.raises(hk.OpError, match="lookup"):
        hk.Session(g).run(out)


def test_variables_created_inside_a_body_of_a_module_fn_are_module_variables(tmp_path):
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 2])

        def body(i, h):
            with hk.variable_scope("cell", reuse=hk.AUTO_REUSE):
                h = hk.layers.dense(h, 2, name="d", kernel_initializer=hk.initializers.constant(0.5))
            return i + 1, h

        hk.add_signature(inputs=x, outputs=hk.while_loop(lambda i, h: i < 2, body, [hk.constant(0), x])[1])

    spec = hk.create_module_spec(module_fn)
    assert sorted(spec.variables) == ["cell/d/bias", "cell/d/kernel"]
    hk.Module(spec).export(str(tmp_path / "m"))
    # One kernel (all 0.5) shared by both iterations: [2, 0] -> [1, 1] -> [1, 1].
    np.testing.assert_allclose(hk.Module(str(tmp_path / "m"))(np.array([[2.0, 0.0]], np.float32)), [[1.0, 1.0]])


def test_a_kernel_failing_inside_map_fn_names_its_node():
    g = hk.Graph()
    with g.as_default():
        table = hk.constant(np.zeros((3, 2), np.float32))
        out = hk.map_fn(lambda i: hk.gather(table, i, name="row_lookup"), hk.constant(np.array([0, 5], np.int64)))
    with pytest.raises(hk.OpError, match="row_lookup"):
        hk.Session(g).run(out)
