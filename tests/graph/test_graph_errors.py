"""Graph building refuses misuse from the public API with messages naming the offending value."""

from __future__ import annotations

import re

import numpy as np
import pytest

import hubkit as hk


def test_reset_default_graph_is_refused_inside_as_default(graph):
    with pytest.raises(
        hk.GraphError, match=r"reset_default_graph\(\) cannot be called inside a `with graph.as_default\(\)`"
    ):
        hk.reset_default_graph()


def test_constant_of_a_tensor_is_refused(graph):
    x = hk.placeholder(hk.float32, [2], name="x")
    with pytest.raises(hk.GraphError, match=r"constant\(\) needs a concrete value, got the tensor 'x:0'"):
        hk.constant(x)


@pytest.mark.parametrize("value", [np.array([1 + 2j]), np.array(["2020-01-01"], dtype="datetime64[D]")])
def test_constant_of_an_unsupported_numpy_kind_is_refused(graph, value):
    with pytest.raises(
        hk.GraphError, match=r"Cannot make a constant from .* of dtype " + re.escape(f"{value.dtype}.")
    ):
        hk.constant(value)


def test_convert_to_tensor_refuses_a_tensor_of_another_dtype(graph):
    x = hk.placeholder(hk.int32, [2], name="ids")
    assert hk.convert_to_tensor(x, dtype=hk.int32) is x
    with pytest.raises(hk.GraphError, match=r"Tensor 'ids:0' has dtype int32, but float32 is required"):
        hk.convert_to_tensor(x, dtype=hk.float32)


def test_a_control_dependency_from_another_graph_is_refused(graph):
    other = hk.Graph()
    with other.as_default():
        foreign = hk.constant(1.0, name="foreign")
    with (
        pytest.raises(hk.GraphError, match=r"Control dependency .*foreign.* is not a node of this graph"),
        graph.control_dependencies([foreign]),
    ):
        pass
    with (
        pytest.raises(hk.GraphError, match=r"Control dependency 3 is not a node of this graph"),
        graph.control_dependencies([3]),
    ):
        pass


@pytest.mark.parametrize("shape", [None, [], [None, 2]])
def test_len_of_a_tensor_without_a_known_first_dimension_is_a_type_error(graph, shape):
    x = hk.placeholder(hk.float32, shape, name="x")
    with pytest.raises(TypeError, match=r"len\(\) of tensor 'x:0' with shape .* is unknown"):
        len(x)
    assert len(hk.placeholder(hk.float32, [3, None])) == 3
