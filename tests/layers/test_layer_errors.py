"""Bad arguments and inputs to the layer objects and layer functions: each refusal names what was wrong."""

from __future__ import annotations

import pytest

import hubkit as hk
from hubkit import layers as L


def ph(shape, dtype=hk.float32):
    return hk.placeholder(dtype, shape, name="x")


CONSTRUCTOR_ERRORS = [
    ("conv_triple", lambda: L.Conv2D(2, (3, 3, 3), name="c"), r"Layer 'c': kernel_size must be a positive int or a pair of positive ints, got \(3, 3, 3\)"),
    ("conv_dilation", lambda: L.Conv2D(2, 3, dilation_rate=0, name="c"), r"Layer 'c': dilation_rate must be a positive int or a pair of positive ints, got 0"),
    ("conv_padding", lambda: L.Conv2D(2, 3, padding="full", name="c"), r"Layer 'c': padding must be one of \['same', 'valid'\], got 'full'"),
    ("dropout_rate", lambda: L.Dropout(1.0, name="c"), r"Dropout layer 'c' needs a rate in \[0, 1\), got 1\.0"),
]


@pytest.mark.parametrize(("case", "make", "message"), CONSTRUCTOR_ERRORS, ids=[c[0] for c in CONSTRUCTOR_ERRORS])
def test_layer_constructors_refuse_bad_arguments(case, make, message):
    with pytest.raises(hk.GraphError, match=message):
        make()


CALL_ERRORS = [
    ("conv_rank", lambda: L.Conv2D(2, 3, name="c")(ph([None, 4, 3])), r"Layer 'c' needs NHWC inputs with known channels, got \[None, 4, 3\]"),
    ("dense_last_dim", lambda: L.Dense(2, name="c")(ph([None, None])), r"Dense layer 'c' needs inputs with a known last dimension, got \[None, None\]"),
    ("dense_two_unknown", lambda: L.Dense(2, name="c")(ph([None, None, 3])), r"at most one unknown leading dimension, got \[None, None, 3\]"),
    ("embedding_floats", lambda: L.Embedding(5, 2, name="c")(ph([None])), r"Embedding layer 'c' needs integer ids, got 'x:0' of dtype float32"),
    ("subtract_three", lambda: L.Subtract(name="c")([ph([None, 2])] * 3), r"Layer 'c' needs exactly 2 inputs, got 3"),
    ("bn_unknown_rank", lambda: L.BatchNormalization(name="c")(ph(None)), r"Layer 'c' needs inputs of known rank"),
    ("bn_batch_axis", lambda: L.BatchNormalization(axis=0, name="c")(ph([None, 3])),
     r"Layer 'c' needs a known size of axis 0 to create its weights; inputs have shape \[None, 3\]"),
    ("ln_axis", lambda: L.LayerNormalization(axis=2, name="c")(ph([None, 3])), r"Layer 'c': axis 2 is out of range for inputs of rank 2"),
    ("dense_rank", lambda: L.Dense(2, name="c")(ph([3])), r"Dense layer 'c' needs inputs of rank 2 or more, got \[3\]"),
    ("global_pool_rank", lambda: L.GlobalAveragePooling2D(name="c")(ph([None, 3])), r"Layer 'c' needs rank-4 inputs, got \[None, 3\]"),
    ("flatten_unknown", lambda: L.Flatten(name="c")(ph([None, None, 3])), r"Flatten layer 'c' needs known non-batch dimensions, got \[None, None, 3\]"),
    ("reshape_unknown", lambda: L.Reshape([-1], name="c")(ph([None, None])), r"Reshape layer 'c' with -1 needs known non-batch dimensions"),
    ("reshape_size", lambda: L.Reshape([-1, 4], name="c")(ph([None, 6])), r"Reshape layer 'c' cannot reshape \[None, 6\] to \[None, -1, 4\]"),
]


@pytest.mark.parametrize(("case", "call", "message"), CALL_ERRORS, ids=[c[0] for c in CALL_ERRORS])
def test_layer_calls_refuse_bad_inputs(graph, case, call, message):
    with pytest.raises(hk.GraphError, match=message):
        call()


def test_layer_refuses_a_second_weight_of_one_name_and_inputs_from_two_graphs(graph):
    layer = L.Dense(2, name="c")
    layer.add_weight("w", [2], "zeros")
    with pytest.raises(hk.GraphError, match=r"Layer 'c' already has a weight named 'w'"):
        layer.add_weight("w", [2], "zeros")
    with hk.Graph().as_default():
        other = hk.placeholder(hk.float32, [None, 2], name="other")
    with pytest.raises(hk.GraphError, match=r"Layer inputs come from different graphs \('other:0'"):
        L.Add(name="a")([ph([None, 2]), other])


def test_layer_input_and_output_need_exactly_one_symbolic_call(graph):
    layer = L.Dense(2, name="c")
    with pytest.raises(hk.GraphError, match=r"Layer 'c' has never been called on symbolic tensors, so it has no input"):
        _ = layer.input
    layer(ph([None, 3]))
    layer(ph([None, 3]))
    with pytest.raises(hk.GraphError, match=r"was called 2 times, so its output is ambiguous"):
        _ = layer.output


FUNCTION_ERRORS = [
    ("dense_rank", lambda: L.dense(ph([None]), 2), r"Dense layer 'dense' needs inputs of rank 2 or more, got \[None\]"),
    ("dense_ints", lambda: L.dense(ph([None, 2], hk.int32), 2), r"dense needs float inputs; 'x:0' has dtype int32"),
    ("embedding_floats", lambda: L.embedding(ph([None]), 5, 2), r"Embedding layer 'embedding' needs integer ids, got 'x:0' of dtype float32"),
    ("embedding_dim", lambda: L.embedding(ph([None], hk.int32), 5, 0), r"Layer 'embedding': output_dim must be a positive integer, got 0"),
    ("conv_rank", lambda: L.conv2d(ph([None, 4, 4, 3, 1]), 2, 3), r"Layer 'conv2d' needs NHWC inputs with known channels, got \[None, 4, 4, 3, 1\]"),
    ("conv_kernel", lambda: L.conv2d(ph([None, 4, 4, 3]), 2, 0), r"Layer 'conv2d': kernel_size must be a positive int or a pair of positive ints, got 0"),
    ("bn_axis", lambda: L.batch_normalization(ph([None, 3]), axis=2), r"Layer 'batch_normalization': axis 2 is out of range for inputs of rank 2"),
]


@pytest.mark.parametrize(("case", "call", "message"), FUNCTION_ERRORS, ids=[c[0] for c in FUNCTION_ERRORS])
def test_layer_functions_refuse_bad_inputs(graph, case, call, message):
    with pytest.raises(hk.GraphError, match=message):
        call()


def test_unknown_activation_that_is_not_a_string_is_a_graph_error(graph):
    with pytest.raises(hk.GraphError, match=r"Unknown activation \[1\]; expected a callable or one of"):
        L.dense(ph([None, 3]), 2, activation=[1])
