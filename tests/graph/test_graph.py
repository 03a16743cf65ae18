"""The graph layer: unique names, name scopes, collections, constants, default graphs, lookups."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


def test_names_are_made_unique_tf_style(graph):
    a = hk.placeholder(hk.float32, name="dense")
    b = hk.placeholder(hk.float32, name="dense")
    c = hk.placeholder(hk.float32, name="dense")
    assert [a.name, b.name, c.name] == ["dense:0", "dense_1:0", "dense_2:0"]
    assert graph.unique_name("dense", mark_used=False) == "dense_3"
    with pytest.raises(hk.GraphError, match="Invalid name"):
        hk.placeholder(hk.float32, name="bad name!")


def test_name_scopes_nest_and_reenter(graph):
    with hk.name_scope("block") as scope:
        assert scope == "block"
        x = hk.placeholder(hk.float32, name="x")
        with hk.name_scope("inner"):
            y = hk.placeholder(hk.float32, name="y")
    with hk.name_scope("block"):  # a second "block" scope is made unique
        z = hk.placeholder(hk.float32, name="x")
    with hk.name_scope("block/"):  # a trailing "/" re-enters the exact scope
        w = hk.placeholder(hk.float32, name="x")
    with hk.name_scope("block"), hk.name_scope(None):  # None resets to the root scope
        r = hk.placeholder(hk.float32, name="root")
    assert [t.name for t in (x, y, z, w, r)] == [
        "block/x:0", "block/inner/y:0", "block_1/x:0", "block/x_1:0", "root:0"
    ]
    assert graph.current_scope == ""


def test_op_nodes_are_named_by_type_inside_scopes(graph):
    x = hk.placeholder(hk.float32, [2], name="x")
    with hk.name_scope("layer"):
        y = x + 1.0
        z = x + 2.0
    assert y.op.name == "layer/Add" and z.op.name == "layer/Add_1"
    assert y.op.type == "Add" and y.op.inputs[0] is x


def test_collections(graph):
    assert graph.get_collection("things") == []
    hk.add_to_collection("things", 1)
    graph.add_to_collection("things", 2)
    got = hk.get_collection("things")
    assert got == [1, 2]
    got.append(3)
    assert graph.get_collection("things") == [1, 2], "get_collection returns a copy"
    assert "things" in graph.collections
    assert hk.GraphKeys.TRAINABLE_VARIABLES != hk.GraphKeys.GLOBAL_VARIABLES


@pytest.mark.parametrize(
    ("value", "dtype", "want"),
    [
        (1, None, hk.int32),
        (2**40, None, hk.int64),
        (1.5, None, hk.float32),
        ([1.0, 2.0], None, hk.float32),
        (np.array([1, 2], np.int64), None, hk.int64),
        (np.array([1, 2], np.int32), None, hk.int32),
        (True, None, hk.bool),
        ("text", None, hk.string),
        (1, hk.float64, hk.float64),
        ([1, 2], "float32", hk.float32),
    ],
)
def test_constant_dtype_rules(graph, value, dtype, want):
    c = hk.constant(value, dtype=dtype)
    assert c.dtype is want
    assert c.shape == np.shape(value)
    got = hk.Session(graph).run(c)
    assert np.asarray(got).dtype == want.np_dtype


def test_constant_refuses_lossy_or_wrong_values(graph):
    with pytest.raises(hk.GraphError, match="fraction"):
        hk.constant([1.5], dtype=hk.int32)
    with pytest.raises(hk.GraphError, match="strings"):
        hk.constant(["a"], dtype=hk.float32)
    with pytest.raises(hk.GraphError, match="Unsupported dtype"):
        hk.constant([1], dtype="complex64")


def test_nested_as_default():
    outer, inner = hk.Graph(), hk.Graph()
    with outer.as_default():
        assert hk.get_default_graph() is outer
        with inner.as_default():
            assert hk.get_default_graph() is inner
            t = hk.placeholder(hk.float32)
        assert hk.get_default_graph() is outer
    assert t.graph is inner
    assert hk.get_default_graph() not in (outer, inner)


def test_tensors_of_different_graphs_do_not_mix():
    g1, g2 = hk.Graph(), hk.Graph()
    with g1.as_default():
        a = hk.placeholder(hk.float32, [1])
    with g2.as_default():
        b = hk.placeholder(hk.float32, [1])
        with pytest.raises(hk.GraphError, match="another graph"):
            a + b


def test_get_tensor_by_name(graph):
    x = hk.placeholder(hk.float32, [2], name="x")
    with hk.name_scope("s"):
        y = hk.identity(x, name="y")
    assert graph.get_tensor("x:0") is x
    assert graph.get_tensor("s/y") is y
    assert graph.get_node("s/y") is y.op
    with pytest.raises(hk.GraphError, match="no node named 'nope'"):
        graph.get_tensor("nope:0")
    with pytest.raises(hk.GraphError, match="there is no output 3"):
        graph.get_tensor("x:3")


def test_tensor_protocol(graph):
    x = hk.placeholder(hk.float32, [None, 3], name="x")
    assert repr(x) == "<hubkit.Tensor 'x:0' shape=[None, 3] dtype=float32>"
    assert x.ndim == 2 and x.get_shape() == (None, 3)
    with pytest.raises(TypeError, match="Python bool"):
        bool(x)
    with pytest.raises(TypeError, match="not iterable"):
        iter(x)
    assert {x: 1}[x] == 1
