"""check_graph names the node that would fail later."""

from __future__ import annotations

import pytest

import hubkit as hk
from hubkit.ops.check import check_graph


def test_valid_graph_passes():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        v = hk.Variable([[1.0], [2.0], [3.0]], name="v")
        hk.matmul(x, v)
    check_graph(g, require_bound_variables=True)


def test_unregistered_op_and_bad_attrs():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [2])
    g.create_node("Mystery", [x], {}, [(hk.float32, (2,))], name="mystery")
    with pytest.raises(hk.GraphError, match="Node 'mystery' uses the unknown op 'Mystery'"):
        check_graph(g)
    g2 = hk.Graph()
    with g2.as_default():
        y = hk.placeholder(hk.float32, [2])
    g2.create_node("Identity", [y], {"callback": print}, [(hk.float32, (2,))], name="ident")
    with pytest.raises(hk.GraphError, match=r"Identity node 'ident': attribute 'callback' is a builtin_function"):
        check_graph(g2)


def test_outputs_contradicting_inference():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [2])
    g.create_node("Identity", [x], {}, [(hk.int32, (2,))], name="liar")
    with pytest.raises(hk.GraphError, match=r"Identity node 'liar': output 0 is int32 \[2\], but its op infers float32"):
        check_graph(g)


def test_unbound_variable():
    g = hk.Graph()
    g.create_node("Variable", [], {"dtype": hk.float32, "shape": (1,)}, [(hk.float32, (1,))], name="orphan")
    check_graph(g)
    with pytest.raises(hk.GraphError, match="Variable node 'orphan' has no value bound"):
        check_graph(g, require_bound_variables=True)
