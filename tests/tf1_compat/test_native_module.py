"""tensorflow_hub 0.15's native-module tests (TF1 API), their behaviours rewritten for hubkit.

Each test names the TF Hub test whose behaviour it checks. Deliberate differences are listed in
docs/tf1_compat.md (e.g. variable names carry no ":0").
"""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import wrappers_pb2

import hubkit as hk


def _session(g):
    return hk.Session(g)


def multi_signature_module():
    x = hk.placeholder(hk.float32, [None])
    hk.add_signature("double", {"x": x}, {"y": 2 * x})
    z = hk.placeholder(hk.float32, [None])
    hk.add_signature("square", {"z": z}, {"z_out": z * z})


def stateless_module_fn():
    x = hk.placeholder(hk.int64)
    hk.add_signature(inputs=x, outputs=x * x)


def unused_input_module_fn():
    x = hk.placeholder(hk.int64)
    y = hk.placeholder(hk.int64)
    hk.add_signature(inputs={"x": x, "unused": y}, outputs=x * x)


def double_module_fn():
    w = hk.get_variable("w", [], initializer=hk.initializers.constant(2.0))
    x = hk.placeholder(hk.float32)
    hk.add_signature(inputs=x, outputs=x * w)


def cond_module_fn():
    x = hk.placeholder(hk.float32, [], name="x")
    hk.add_signature(inputs=x, outputs=hk.cond(x > 0.0, lambda: hk.identity(x), lambda: hk.constant(0.0)))


def nested_cond_module_fn():
    x = hk.placeholder(hk.float32, [], name="x")
    result = hk.cond(
        x > 0.0,
        lambda: hk.cond(x > 3.0, lambda: hk.identity(x), lambda: hk.multiply(x, 1.0)),
        lambda: hk.cond(x < -3.0, lambda: hk.constant(0.0), lambda: hk.multiply(hk.constant(0.0), 1.0)),
    )
    hk.add_signature(inputs=x, outputs=result)


def while_module_fn():
    x = hk.placeholder(hk.float32, [], name="x")
    n = hk.placeholder(hk.int32, [], name="n")
    _, pow_x = hk.while_loop(lambda i, ix: i < n, lambda i, ix: [hk.add(i, 1), ix * x],
                             [hk.constant(0), hk.constant(1.0)])
    hk.add_signature(inputs={"x": x, "n": n}, outputs=pow_x)


def nested_control_flow_module_fn():
    elems = hk.placeholder(hk.float32, [None], name="elems")
    a = hk.placeholder(hk.float32, [], name="a")

    def sum_above_a(acc, x):
        return acc + hk.cond(x > a, lambda: x, lambda: hk.constant(0.0))

    hk.add_signature(inputs={"elems": elems, "a": a},
                     outputs=hk.foldl(sum_above_a, elems, initializer=hk.constant(0.0)))


def attached_messages_module_fn(tagged=0):
    x = hk.placeholder(hk.float32, [None])
    hk.add_signature(inputs={"x": x}, outputs={"y": 2 * x})
    hk.attach_message("numbers", wrappers_pb2.Int64Value(value=-3))  # overwritten
    hk.attach_message("numbers", wrappers_pb2.Int64Value(value=42))
    hk.attach_message("tagged", wrappers_pb2.Int64Value(value=tagged))


# -- NativeModuleTest ----------------------------------------------------------------------------------------
def test_multi_signature_spec():
    spec = hk.create_module_spec(multi_signature_module)
    assert sorted(spec.get_signature_names()) == ["double", "square"]
    assert list(spec.get_input_info_dict("double")) == ["x"]
    assert list(spec.get_output_info_dict("square")) == ["z_out"]
    assert sorted(spec.get_tags()) == [set()]


def test_no_signatures_present():
    def wrong_module_fn():
        hk.identity(hk.placeholder(hk.float32, [None, 3]))

    with pytest.raises(ValueError, match=r"[Nn]o signature"):
        hk.create_module_spec(wrong_module_fn)


# -- TFHubStatelessModuleTest --------------------------------------------------------------------------------
def test_load_module_from_func_def_and_unused_input():
    g = hk.Graph()
    with g.as_default():
        v = hk.placeholder(hk.int64)
        y = hk.Module(hk.create_module_spec(stateless_module_fn))(v)
        v1, v2 = hk.placeholder(hk.int64), hk.placeholder(hk.int64)
        out = hk.Module(hk.create_module_spec(unused_input_module_fn))({"x": v1, "unused": v2})
    assert _session(g).run(y, {v: 10}) == 100
    assert _session(g).run(out, {v1: 10, v2: 4}) == 100


def test_convert_to_tensor_and_type_errors():
    spec = hk.create_module_spec(stateless_module_fn)
    g = hk.Graph()
    with g.as_default():
        m = hk.Module(spec)
        y = m(hk.constant(np.array([10, 2], np.int64)))
        assert list(_session(g).run(y)) == [100, 4]
        with pytest.raises(TypeError):
            m(hk.constant("hello"))
        with pytest.raises(TypeError, match="missing"):
            m()
    with pytest.raises(TypeError):
        m("hello")


def test_packing_errors_are_type_errors_and_hubkit_errors():
    spec = hk.create_module_spec(unused_input_module_fn)
    m = hk.Module(spec)
    for bad, pattern in [(None, r"missing"), ({"x": [1]}, r"missing \['unused'\]"),
                         ({"x": [1], "unused": [1], "y": [1]}, r"unexpected \['y'\]"), (1, "dict")]:
        with pytest.raises(TypeError, match=pattern) as info:
            m(bad)
        assert isinstance(info.value, hk.HubkitError)


def test_use_within_while_loop_with_gradients():
    g = hk.Graph()
    with g.as_default():
        m = hk.Module(hk.create_module_spec(double_module_fn), trainable=True)
        i, x = hk.constant(0), hk.constant(10.0)
        p = hk.placeholder(hk.int32, [])
        oi, ox = hk.while_loop(lambda i, x: hk.less(i, p), lambda i, x: (hk.add(i, 1), m(x)), [i, x])
        v = m.variables[0]
        dodv = hk.gradients(ox, v)[0]  # p * v**(p-1) * x
        dodx = hk.gradients(ox, x)[0]  # v**p
        sess = _session(g)
        for n, expected, grads in [(1, 20, [10, 2]), (2, 40, [40, 4]), (4, 160, [320, 16])]:
            assert [float(a) for a in sess.run([oi, ox], {p: n})] == [n, expected]
            assert [float(a) for a in sess.run([dodv, dodx], {p: n})] == grads


def test_use_within_map():
    g = hk.Graph()
    with g.as_default():
        m = hk.Module(hk.create_module_spec(double_module_fn))
        y = hk.map_fn(m, hk.constant([1.0, 11.0, 101.0]))
    assert list(_session(g).run(y)) == [2, 22, 202]


# -- TFHubModulesWithControlFlow -----------------------------------------------------------------------------
@pytest.mark.parametrize("module_fn", [cond_module_fn, nested_cond_module_fn])
def test_relu_modules_with_conds(module_fn):
    spec = hk.create_module_spec(module_fn)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [], name="x")
        y = hk.Module(spec)(x)
        grad = hk.gradients([y], [x])
    sess = _session(g)
    assert sess.run(y, {x: 9.1}) == pytest.approx(9.1)
    assert sess.run(y, {x: -2.4}) == 0.0
    assert sess.run(grad, {x: 2}) == [1.0]
    assert sess.run(grad, {x: -2}) == [0.0]


def test_while_module():
    spec = hk.create_module_spec(while_module_fn)
    g = hk.Graph()
    with g.as_default():
        x, n = hk.placeholder(hk.float32, []), hk.placeholder(hk.int32, [])
        y = hk.Module(spec)({"x": x, "n": n})
        grad = hk.gradients([y], [x])
    sess = _session(g)
    assert sess.run(y, {x: 9.1, n: 1}) == pytest.approx(9.1)
    assert sess.run(y, {x: 2.4, n: 2}) == pytest.approx(5.76)
    assert sess.run(grad, {x: 2, n: 3}) == [pytest.approx(12.0)]


def test_use_module_with_while_loop_inside_cond():
    spec = hk.create_module_spec(while_module_fn)
    g = hk.Graph()
    with g.as_default():
        m = hk.Module(spec)
        out = hk.cond(hk.equal(hk.constant(0), hk.constant(0)),
                      lambda: m({"x": hk.constant(3.0), "n": hk.constant(2)}), lambda: hk.constant(4.0))
    assert _session(g).run(out) == 9.0


def test_nested_control_flow_module():
    spec = hk.create_module_spec(nested_control_flow_module_fn)
    g = hk.Graph()
    with g.as_default():
        elems, a = hk.placeholder(hk.float32, [None]), hk.placeholder(hk.float32, [])
        out = hk.Module(spec)({"elems": elems, "a": a})
        grad = hk.gradients([out], [elems])
    sess = _session(g)
    assert sess.run(out, {a: 1.1, elems: [10, 0, 0.5, 1.2]}) == pytest.approx(11.2)
    np.testing.assert_allclose(sess.run(grad, {a: 1, elems: [10, 0, 0.5, 1.2]}), [[1.0, 0.0, 0.0, 1.0]])


def test_control_flow_modules_round_trip_through_disk(tmp_path):
    for i, fn in enumerate([cond_module_fn, nested_cond_module_fn, while_module_fn, nested_control_flow_module_fn]):
        hk.Module(hk.create_module_spec(fn)).export(str(tmp_path / str(i)))
    assert hk.Module(str(tmp_path / "0"))(np.float32(-1.0)) == 0.0
    assert hk.Module(str(tmp_path / "1"))(np.float32(5.0)) == 5.0
    assert hk.Module(str(tmp_path / "2"))({"x": np.float32(2.0), "n": np.int32(10)}) == 1024.0
    out = hk.Module(str(tmp_path / "3"))({"elems": np.array([10, 0, 0.5, 1.2], np.float32), "a": np.float32(1.1)})
    assert out == pytest.approx(11.2)


# -- TFHubModuleWithAttachedMessages -------------------------------------------------------------------------
def test_attached_messages_missing_required_is_a_key_error():
    spec = hk.create_module_spec(attached_messages_module_fn)
    assert spec.get_attached_message("numbers", wrappers_pb2.Int64Value).value == 42
    assert spec.get_attached_message("bad", wrappers_pb2.Int64Value) is None
    with pytest.raises(KeyError) as info:
        spec.get_attached_message("bad", wrappers_pb2.Int64Value, required=True)
    assert isinstance(info.value, hk.HubkitError)
    with pytest.raises(KeyError):
        hk.Module(spec).get_attached_message("bad", wrappers_pb2.Int64Value, required=True)


def test_attached_messages_per_tags_and_separate_copies():
    tags_and_args = [(set(), {"tagged": 1}), ({"double", "the", "value"}, {"tagged": 2})]
    spec = hk.create_module_spec(attached_messages_module_fn, tags_and_args=tags_and_args)
    for tags, args in tags_and_args:
        assert spec.get_attached_message("tagged", wrappers_pb2.Int64Value, tags=tags).value == args["tagged"]
        assert hk.Module(spec, tags=tags).get_attached_message("tagged", wrappers_pb2.Int64Value).value == args[
            "tagged"]
    msg = spec.get_attached_message("numbers", wrappers_pb2.Int64Value)
    msg.Clear()
    assert spec.get_attached_message("numbers", wrappers_pb2.Int64Value).value == 42


# -- TensorInfo ----------------------------------------------------------------------------------------------
def test_tensor_info_attributes():
    spec = hk.create_module_spec(multi_signature_module)
    info = spec.get_input_info_dict("double")["x"]
    assert info.dtype is hk.float32
    assert info.get_shape() == (None,)
    assert info.is_sparse is False and info.is_composite is False


# -- Module state in a graph ---------------------------------------------------------------------------------
def test_module_constructed_in_a_graph_adds_its_variables_to_the_collections():
    spec = hk.create_module_spec(double_module_fn)
    g = hk.Graph()
    with g.as_default():
        hk.Module(spec, name="frozen")
        assert [v.name for v in hk.get_collection(hk.GraphKeys.GLOBAL_VARIABLES)] == ["frozen/w"]
        assert hk.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES) == []
        with hk.variable_scope("outer"):
            m = hk.Module(spec, trainable=True, name="tuned")
        assert m.variables[0].name == "outer/tuned/w"
        assert [v.name for v in hk.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES)] == ["outer/tuned/w"]


# -- KerasLayer (TF1 parts) ----------------------------------------------------------------------------------
def _two_outputs_fn():
    x = hk.placeholder(hk.float32, [None, 3], name="x")
    hk.add_signature(inputs=x, outputs=x * 2.0)
    hk.add_signature("two", inputs=x, outputs={"b_double": x * 2.0, "a_half": x * 0.5})


def test_hub_layer_signature_outputs_as_dict(tmp_path):
    hk.Module(hk.create_module_spec(_two_outputs_fn)).export(str(tmp_path / "two"))
    spec = str(tmp_path / "two")
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        layer = hk.HubLayer(spec, signature="two", signature_outputs_as_dict=True)
        out = layer(x)
        assert sorted(out) == ["a_half", "b_double"]
        res = hk.Session(g).run(out, {x: np.ones((2, 3), np.float32)})
    np.testing.assert_allclose(res["a_half"], np.full((2, 3), 0.5))
    assert layer.get_config()["signature_outputs_as_dict"] is True
    with pytest.raises(hk.SignatureError, match="not both"):
        hk.HubLayer(spec, signature="two", output_key="a_half", signature_outputs_as_dict=True)
    with pytest.raises(hk.SignatureError, match="needs a signature"):
        hk.HubLayer(spec, signature_outputs_as_dict=True)


# -- EvalFunctionForModuleTest (module_test.py) --------------------------------------------------------------
def _special_fn():
    x = hk.placeholder(hk.float32, [None], name="x")
    hk.add_signature(inputs={"x": x}, outputs=2.0 * x)
    y = hk.placeholder(hk.float32, [None], name="y")
    hk.add_signature("extra", inputs={"x": x, "y": y}, outputs={"default": 2.0 * x, "z": 2.0 * x + 3.0 * y})
    sp = hk.sparse_placeholder(hk.float32, [None], name="sp")
    hk.add_signature("sparse", inputs={"x": sp}, outputs=2.0 * hk.sparse.to_dense(sp))


def test_eval_function_for_module():
    spec = hk.create_module_spec(_special_fn)
    with hk.eval_function_for_module(spec) as f:
        np.testing.assert_array_equal(f([1, 2]), [2, 4])
        np.testing.assert_array_equal(f({"x": [1, 2]}), [2, 4])
        result = f({"x": [1, 2]}, as_dict=True)
        assert list(result) == ["default"]
        out = f(dict(x=[1], y=[2]), signature="extra", as_dict=True)
        assert out["default"] == [2] and out["z"] == [8]
        np.testing.assert_array_equal(f(hk.SparseTensorValue([[0]], [1.0], [2]), signature="sparse"), [2, 0])


def test_initializer_ops_run_and_do_nothing():
    g = hk.Graph()
    with g.as_default():
        v = hk.get_variable("v", [2], initializer=hk.initializers.constant(3.0))
        sess = hk.Session(g)
        sess.run([hk.global_variables_initializer(), hk.tables_initializer(), hk.local_variables_initializer()])
        np.testing.assert_array_equal(sess.run(v), [3.0, 3.0])


def test_module_export_accepts_a_session_argument(tmp_path):
    g = hk.Graph()
    with g.as_default():
        m = hk.Module(hk.create_module_spec(double_module_fn), trainable=True)
        sess = hk.Session(g)
        m.variables[0].assign(3.0)
        m.export(str(tmp_path / "m"), sess)
    assert hk.Module(str(tmp_path / "m"))(np.float32(2.0)) == 6.0


def test_unsupported_collections_are_refused_unless_dropped():
    def module_fn():
        scale = hk.get_variable("x", [], collections=["my_scope"])
        x = hk.placeholder(hk.float32, [None, 3])
        hk.add_signature("my_func", {"x": x}, {"y": x * scale})

    with pytest.raises(ValueError, match="my_scope"):
        hk.create_module_spec(module_fn)
    spec = hk.create_module_spec(module_fn, drop_collections=["my_scope"])
    assert spec.get_signature_names() == ["my_func"]


def test_module_with_variables_and_no_checkpoint():
    def module_with_variables():
        hk.get_variable(name="weights", shape=[3], initializer=hk.initializers.zeros())
        hk.get_variable(name="partition", shape=[4], initializer=hk.initializers.zeros(),
                        partitioner=hk.fixed_size_partitioner(3))
        hk.add_signature(outputs=hk.constant(1.0))

    g = hk.Graph()
    with g.as_default():
        hk.Module(hk.create_module_spec(module_with_variables), name="module")
        variables = hk.get_collection(hk.GraphKeys.GLOBAL_VARIABLES)
        # Name order (TF: creation order; see docs/tf1_compat.md).
        assert [v.name for v in variables] == [
            "module/partition/part_0", "module/partition/part_1", "module/partition/part_2", "module/weights"]
        sess = hk.Session(g)
        sess.run(hk.global_variables_initializer())
        for value, expected in zip(sess.run(variables), [[0.0, 0.0], [0.0], [0.0], [0.0, 0.0, 0.0]]):
            np.testing.assert_array_equal(value, expected)


def another_stateful_module_fn():
    module_input = hk.placeholder(hk.float32)
    variable = hk.get_variable("iamtheoneandonly", initializer=np.array([3.0], np.float32))
    hk.add_signature(inputs=module_input, outputs=module_input * variable)


def test_apply_stateful_module_multiple_times(tmp_path):
    g = hk.Graph()
    with g.as_default():
        m = hk.Module(hk.create_module_spec(another_stateful_module_fn), trainable=True)
        times2 = m(hk.constant([2.0]))
        times3 = m(hk.constant([3.0]))
        train = hk.train.GradientDescent(0.05).minimize(hk.reduce_mean(hk.square(times2 - 4.0)))
        sess = hk.Session(g)
        sess.run(hk.global_variables_initializer())
        for _ in range(50):
            sess.run(train)
        np.testing.assert_allclose(sess.run(times2), [4.0], rtol=1e-3)
        np.testing.assert_allclose(sess.run(times3), [6.0], rtol=1e-3)
        m.export(str(tmp_path / "another"), sess)
    g2 = hk.Graph()
    with g2.as_default():
        loaded = hk.Module(str(tmp_path / "another"))
        times4, times5 = loaded(hk.constant([4.0])), loaded(hk.constant([5.0]))
        np.testing.assert_allclose(hk.Session(g2).run([times4, times5]), [[8.0], [10.0]], rtol=1e-3)


def test_multiple_applications_in_different_scopes(tmp_path):
    g = hk.Graph()
    with g.as_default():
        m = hk.Module(hk.create_module_spec(another_stateful_module_fn), name="moduleA")
        with hk.name_scope("foo"), hk.variable_scope("bar"):
            times2 = m(hk.constant([2.0]))
        with hk.name_scope("baz"):
            times3 = m(hk.constant([3.0]))
        assert hk.Session(g).run([times2, times3]) == [[6.0], [9.0]]
    assert len(m.variable_map) == 1
    assert m.variable_map["iamtheoneandonly"].name == "moduleA/iamtheoneandonly"
