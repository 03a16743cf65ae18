"""Variables, sessions, gradients, initializers and variable scopes refuse bad input by name."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit import initializers


# -- variables --------------------------------------------------------------------------------------
def test_a_variable_needs_a_value_or_an_initializer():
    with pytest.raises(hk.GraphError, match=r"Variable 'w' needs an initial_value or an initializer"):
        hk.Variable(name="w")


@pytest.mark.parametrize("shape", [None, [None, 2]])
def test_a_variable_made_by_an_initializer_needs_a_full_shape(shape):
    with pytest.raises(hk.GraphError, match=r"Variable 'w' needs a fully known shape, got"):
        hk.Variable(name="w", initializer=initializers.zeros(), shape=shape)


def test_assigning_another_shape_names_both_shapes():
    v = hk.Variable(np.zeros((2, 3), np.float32), name="w")
    with pytest.raises(
        hk.GraphError, match=r"Cannot assign variable 'w': shape \[3, 2\] does not match \[2, 3\]"
    ):
        v.assign(np.ones((3, 2), np.float32))
    assert not v.value.any()


def test_assigning_values_that_do_not_cast_names_the_dtypes():
    v = hk.Variable(np.zeros(2, np.int32), name="ids")
    with pytest.raises(hk.GraphError, match=r"Cannot assign variable 'ids' \(int32\) with float64 values"):
        v.assign(np.array([0.5, 1.5]))
    with pytest.raises(hk.GraphError, match=r"Cannot update variable 'ids' \(int32\) with float64 values"):
        v.assign_add(np.array([0.5, 1.5]))
    v.assign(np.array([1, 2], np.int64))  # same kind: accepted
    assert v.value.tolist() == [1, 2]


# -- sessions ---------------------------------------------------------------------------------------
def test_a_fetch_that_is_not_a_graph_object_is_refused(graph):
    with pytest.raises(
        hk.GraphError, match=r"Cannot fetch 42: expected a Tensor, a Node, a Variable or a name"
    ):
        hk.Session(graph).run(42)


def test_a_node_cannot_be_fed(graph):
    x = hk.placeholder(hk.float32, [], name="x")
    y = hk.add(x, 1.0, name="y")
    with pytest.raises(hk.FeedError, match=r"Cannot feed .*'y'.*: only tensors can be fed"):
        hk.Session(graph).run(y, {x: 1.0, y.node: 2.0})
    with pytest.raises(hk.GraphError, match=r"Cannot feed 3.5: expected a Tensor"):
        hk.Session(graph).run(y, {3.5: 1.0})


# -- gradients --------------------------------------------------------------------------------------
def test_gradients_need_a_y_and_differentiable_xs(graph):
    x = hk.placeholder(hk.float32, [], name="x")
    with pytest.raises(hk.GraphError, match=r"gradients\(\) needs at least one y"):
        hk.gradients([], [x])
    with pytest.raises(
        hk.GraphError, match=r"Cannot differentiate with respect to 'x': expected a Tensor or a Variable"
    ):
        hk.gradients(x * 2.0, ["x"])


# -- initializers -----------------------------------------------------------------------------------
def test_initializers_cannot_make_strings():
    with pytest.raises(hk.GraphError, match=r"Initializer 'zeros' cannot make values of dtype string"):
        initializers.zeros()((2,), "string")


@pytest.mark.parametrize("value", ["a", ["x", "y"], None])
def test_a_constant_initializer_needs_numbers(value):
    with pytest.raises(hk.GraphError, match=r"constant initializer needs numbers, got"):
        initializers.constant(value)


@pytest.mark.parametrize("scale", [0, -1.0])
def test_variance_scaling_needs_a_positive_scale(scale):
    with pytest.raises(hk.GraphError, match=rf"variance_scaling needs a positive scale, got {scale}"):
        initializers.variance_scaling(scale=scale)


def test_variance_scaling_lists_the_distributions():
    with pytest.raises(
        hk.GraphError,
        match=r"Unknown variance_scaling distribution 'normal'; expected one of "
        r"\['truncated_normal', 'uniform', 'untruncated_normal'\]",
    ):
        initializers.variance_scaling(distribution="normal")


# -- variable scopes --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["has space", "", "a:b"])
def test_a_bad_variable_scope_name_is_refused(graph, name):
    with (
        pytest.raises(hk.GraphError, match=r"Invalid variable scope name .*: use letters, digits"),
        hk.variable_scope(name),
    ):
        pass


def test_get_variable_refuses_a_non_numeric_initializer_and_a_non_regularizer(graph):
    with pytest.raises(hk.GraphError, match=r"Cannot initialize a variable from \['a', 'b'\]"):
        hk.get_variable("w", shape=[2], initializer=["a", "b"])
    with pytest.raises(hk.GraphError, match=r"Cannot use 0.1 as a regularizer; pass hubkit.regularizers.l2"):
        hk.get_variable("v", shape=[2], regularizer=0.1)
