"""get_variable, variable_scope and regularizers: names, reuse, collections."""

import numpy as np
import pytest

import hubkit as hk
from hubkit import initializers as init
from hubkit import regularizers


@pytest.fixture
def graph():
    g = hk.Graph()
    with g.as_default():
        yield g


def names(g, key=hk.GraphKeys.GLOBAL_VARIABLES):
    return [v.name for v in g.get_collection(key)]


def test_get_variable_names_and_collections(graph):
    with hk.variable_scope("block"):
        with hk.variable_scope("inner"):
            w = hk.get_variable("w", [2, 3])
        b = hk.get_variable("b", [3], trainable=False)
    assert isinstance(w, hk.Variable)
    assert (w.name, b.name) == ("block/inner/w", "block/b")
    assert names(graph) == ["block/inner/w", "block/b"]
    assert names(graph, hk.GraphKeys.TRAINABLE_VARIABLES) == ["block/inner/w"]
    assert graph.variables["block/inner/w"] is w  # bound in the default graph under its name
    assert graph.get_node("block/inner/w").op == "Variable"


def test_name_scope_does_not_prefix_variables(graph):
    with hk.name_scope("ops_only"):
        v = hk.get_variable("v", [1])
    assert v.name == "v"


def test_second_get_variable_without_reuse_raises(graph):
    with hk.variable_scope("layer"):
        hk.get_variable("w", [2])
    with pytest.raises(hk.GraphError, match=r"Variable 'layer/w' already exists.*reuse=True"), hk.variable_scope("layer"):
        hk.get_variable("w", [2])


def test_reuse_true_returns_the_same_variable(graph):
    with hk.variable_scope("layer"):
        w = hk.get_variable("w", [2, 2])
    with hk.variable_scope("layer", reuse=True):
        assert hk.get_variable("w", [2, 2]) is w
        # reuse is inherited by nested scopes
        with hk.variable_scope("nested"), pytest.raises(hk.GraphError, match=r"'layer/nested/x' does not exist"):
            hk.get_variable("x", [1])
    assert len(graph.get_collection(hk.GraphKeys.GLOBAL_VARIABLES)) == 1


def test_auto_reuse_creates_then_returns(graph):
    for _ in range(3):
        with hk.variable_scope("shared", reuse=hk.AUTO_REUSE):
            v = hk.get_variable("v", [3])
    assert names(graph) == ["shared/v"]
    assert v.name == "shared/v"


def test_reuse_checks_shape_and_dtype(graph):
    with hk.variable_scope("s"):
        hk.get_variable("v", [3])
    with hk.variable_scope("s", reuse=True):
        with pytest.raises(hk.GraphError, match=r"shape \[3\].*requested with shape \[4\]"):
            hk.get_variable("v", [4])
        with pytest.raises(hk.GraphError, match=r"dtype float32.*float64"):
            hk.get_variable("v", [3], dtype=hk.float64)


def test_captured_scope_can_be_reentered_with_reuse(graph):
    with hk.variable_scope("model") as scope:
        a = hk.get_variable("a", [1])
    with hk.variable_scope(scope, reuse=True):
        assert hk.get_variable("a") is a
    with hk.variable_scope(scope):
        scope_again = hk.get_variable_scope()
        scope_again.reuse_variables()
        assert hk.get_variable("a") is a


def test_default_names_are_unique_as_in_tensorflow(graph):
    scopes = []
    for _ in range(3):
        with hk.variable_scope(None, default_name="dense") as s:
            hk.get_variable("kernel", [1])
            scopes.append(s.name)
    assert scopes == ["dense", "dense_1", "dense_2"]
    with hk.variable_scope("outer"), hk.variable_scope(None, default_name="dense") as s:
        assert s.name == "outer/dense"  # unique per enclosing scope


def test_ops_inside_a_variable_scope_get_its_name_scope(graph):
    with hk.variable_scope(None, default_name="dense"):
        w = hk.get_variable("w", [2])
        y = hk.multiply(w, 2.0)
    assert y.name.startswith("dense/")


def test_default_initializers(graph):
    f = hk.get_variable("f", [40, 30])
    i = hk.get_variable("i", [5], dtype=hk.int32)
    limit = np.sqrt(6.0 / 70)
    assert np.abs(f.value).max() <= limit and f.value.std() > limit / 3
    np.testing.assert_array_equal(i.value, np.zeros(5, np.int32))
    assert f.initializer.config["class_name"] == "glorot_uniform"


def test_initializer_forms(graph):
    a = hk.get_variable("a", [2], initializer=init.constant(4.0))
    b = hk.get_variable("b", initializer=np.array([[1.0, 2.0]]))  # shape from the value
    c = hk.get_variable("c", [2], initializer="ones")
    d = hk.get_variable("d", [1], initializer={"class_name": "constant", "config": {"value": 9.0}})
    np.testing.assert_array_equal(a.value, [4.0, 4.0])
    assert b.shape == (1, 2) and b.value.dtype == np.float32
    np.testing.assert_array_equal(c.value, [1.0, 1.0])
    assert d.value[0] == 9.0
    # The graph stores the initializer as data.
    assert graph.get_node("a").attrs["initializer"] == {"class_name": "constant", "config": {"value": 4.0}}


def test_get_variable_errors(graph):
    with pytest.raises(hk.GraphError, match="fully known shape"):
        hk.get_variable("x", [None, 2])
    with pytest.raises(hk.GraphError, match="fully known shape"):
        hk.get_variable("y")
    with pytest.raises(hk.GraphError, match="Invalid variable name"):
        hk.get_variable("bad name", [1])
    with pytest.raises(hk.GraphError, match="plain function"):
        hk.get_variable("z", [1], initializer=lambda shape, dtype: np.zeros(shape))
    hk.constant(1.0, name="taken")
    with pytest.raises(hk.GraphError, match="already has a node"):
        hk.get_variable("taken", [1])
    with pytest.raises(hk.GraphError, match="default_name"), hk.variable_scope(None):
        pass
    with pytest.raises(hk.GraphError, match="reuse must be"), hk.variable_scope("s", reuse="yes"):
        pass


def test_graphs_have_separate_stores():
    g1, g2 = hk.Graph(), hk.Graph()
    with g1.as_default():
        a = hk.get_variable("v", [1])
    with g2.as_default():
        b = hk.get_variable("v", [1])
    assert a is not b
    assert g1.variables["v"] is a and g2.variables["v"] is b


@pytest.mark.parametrize(
    ("regularizer", "expected"),
    [
        (regularizers.l1(0.5), lambda w: 0.5 * np.abs(w).sum()),
        (regularizers.l2(0.25), lambda w: 0.25 * np.square(w).sum()),
        (regularizers.l1_l2(0.1, 0.2), lambda w: 0.1 * np.abs(w).sum() + 0.2 * np.square(w).sum()),
    ],
    ids=["l1", "l2", "l1_l2"],
)
def test_regularization_losses_land_in_the_collection(graph, regularizer, expected):
    w = hk.get_variable("w", [3, 4], dtype=hk.float64, regularizer=regularizer)
    hk.get_variable("free", [2])  # no regularizer: nothing added
    (loss,) = graph.get_collection(hk.GraphKeys.REGULARIZATION_LOSSES)
    assert loss.shape == () and loss.dtype is hk.float64
    assert loss.name.startswith("w/Regularizer/")
    np.testing.assert_allclose(hk.Session(graph).run(loss), expected(w.value), rtol=1e-12)


def test_regularizer_configs_round_trip():
    for r in (regularizers.l1(0.3), regularizers.l2(0.01), regularizers.l1_l2(0.1, 0.2)):
        assert regularizers.get(r.config) == r
    assert regularizers.get("l2") == regularizers.l2(0.01)
    with pytest.raises(hk.GraphError, match=r"Unknown regularizer 'l3'; expected one of \['l1', 'l1_l2', 'l2'\]"):
        regularizers.get("l3")
    with pytest.raises(hk.GraphError, match="must not be negative"):
        regularizers.l2(-1.0)


def test_regularizer_given_as_config(graph):
    hk.get_variable("w", [2], regularizer={"class_name": "l2", "config": {"scale": 1.0}})
    assert len(graph.get_collection(hk.GraphKeys.REGULARIZATION_LOSSES)) == 1
