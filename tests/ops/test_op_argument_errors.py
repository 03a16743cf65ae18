"""Bad arguments to public op functions raise GraphError (at graph build) or OpError (at run time).

Each case asserts the op or function named in the message and the distinctive part of the problem.
"""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


@pytest.fixture(autouse=True)
def graph():
    g = hk.Graph()
    with g.as_default():
        yield g


@pytest.fixture
def x():
    return hk.placeholder(hk.float32, [2, 3], name="x")


# -- nn ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [-1, 1.5, "3", np.float32(2.0)])
def test_set_random_seed_refuses_non_seeds(seed):
    with pytest.raises(hk.GraphError, match=r"set_random_seed: seed must be a non-negative int or None; got"):
        hk.set_random_seed(seed)


def test_embedding_lookup_of_sharded_params(x):
    # Sharded params are supported (tests/tf1_compat/test_partitioned.py); a wrong strategy is named.
    with pytest.raises(hk.GraphError, match=r"unknown partition_strategy 'random'; expected \['div', 'mod'\]"):
        hk.nn.embedding_lookup([x, x], [0], partition_strategy="random")


def test_bias_add_of_a_scalar():
    with pytest.raises(hk.GraphError, match=r"BiasAdd node .*value .* must have rank 1 or more"):
        hk.nn.bias_add(hk.constant(1.0), hk.constant([1.0]))


def test_bias_add_with_a_matrix_bias(x):
    with pytest.raises(hk.GraphError, match=r"BiasAdd node .*bias .*\[3, 1\] float32 must have rank 1\."):
        hk.nn.bias_add(x, hk.zeros([3, 1]))


def test_bias_add_with_another_dtype(x):
    with pytest.raises(hk.GraphError, match=r"bias .*float64 must have the dtype of value 'x:0'"):
        hk.nn.bias_add(x, hk.zeros([3], hk.float64))


def test_softmax_cross_entropy_of_scalar_logits():
    with pytest.raises(hk.GraphError, match=r"SoftmaxCrossEntropyWithLogits node .*logits .* must have rank 1 or more"):
        hk.nn.softmax_cross_entropy_with_logits(labels=hk.constant(1.0), logits=hk.constant(1.0))


def test_sparse_softmax_cross_entropy_of_scalar_logits():
    with pytest.raises(hk.GraphError, match=r"SparseSoftmaxCrossEntropyWithLogits node .*must have rank 1 or more"):
        hk.nn.sparse_softmax_cross_entropy_with_logits(labels=hk.constant(1), logits=hk.constant(1.0))


# -- embedding_lookup_sparse -----------------------------------------------------------------------
PARAMS = np.ones((4, 2), np.float32)


def _ids():
    return hk.text.RaggedTensor(hk.constant([0, 1, 2], hk.int64), hk.constant([0, 0, 1], hk.int64),
                                hk.constant(2, hk.int64))


@pytest.mark.parametrize("combiner", ["median", "SUM", ""])
def test_embedding_lookup_sparse_unknown_combiner(combiner):
    with pytest.raises(hk.GraphError, match=rf"unknown combiner {combiner!r}; expected one of "
                                            r"\['mean', 'sqrtn', 'sum'\]"):
        hk.nn.embedding_lookup_sparse(PARAMS, _ids(), combiner=combiner)


def test_embedding_lookup_sparse_scalar_params():
    with pytest.raises(hk.GraphError, match=r"embedding_lookup_sparse: params must have rank >= 1, got \[\]"):
        hk.nn.embedding_lookup_sparse(np.float32(1), _ids())


def test_embedding_lookup_sparse_integer_params():
    with pytest.raises(hk.GraphError, match=r"EmbeddingLookupSparse node .*params must be floating-point"):
        hk.nn.embedding_lookup_sparse(PARAMS.astype(np.int32), _ids())


def test_embedding_lookup_sparse_ids_that_are_not_ragged():
    with pytest.raises(hk.GraphError, match=r"ids must be a RaggedTensor .* or a \(values, row_ids, num_rows\) "
                                            r"tuple, got list"):
        hk.nn.embedding_lookup_sparse(PARAMS, [0, 1])


def test_embedding_lookup_sparse_matrix_ids():
    ids = hk.placeholder(hk.int64, [None, None])
    with pytest.raises(hk.GraphError, match=r"EmbeddingLookupSparse node .*ids must be 1-D, got"):
        hk.nn.embedding_lookup_sparse(PARAMS, (ids, ids, 3))


def test_embedding_lookup_sparse_vector_num_rows():
    with pytest.raises(hk.GraphError, match=r"num_rows must be an integer scalar, got .*\[2\]"):
        hk.nn.embedding_lookup_sparse(PARAMS, (hk.constant([0]), hk.constant([0]), hk.constant([1, 2])))


def test_embedding_lookup_sparse_fed_matrix_ids_at_run_time(graph):
    ids = hk.placeholder(hk.int64, None, name="ids")  # unknown rank: only the run can tell
    rows = hk.placeholder(hk.int64, None, name="rows")
    out = hk.nn.embedding_lookup_sparse(PARAMS, (ids, rows, 2))
    with pytest.raises(hk.OpError, match=r"ids, row_ids and weights must be 1-D, got shapes \[1, 2\], \[2\]"):
        hk.Session(graph).run(out, {ids: [[0, 1]], rows: [0, 1]})


def test_embedding_lookup_sparse_negative_num_rows_at_run_time(graph):
    ids = hk.placeholder(hk.int64, [None], name="ids")
    out = hk.nn.embedding_lookup_sparse(PARAMS, (ids, ids, hk.constant(-1, hk.int64)))
    with pytest.raises(hk.OpError, match=r"num_rows must be >= 0, got -1"):
        hk.Session(graph).run(out, {ids: [0]})


# -- shape ---------------------------------------------------------------------------------------
def test_slice_with_tensor_bounds(x):
    n = hk.placeholder(hk.int32, [], name="n")
    with pytest.raises(hk.GraphError, match=r"Slice bounds must be ints or None, got slice\(<.*'n:0'.*use "
                                            r"hubkit.gather for tensors"):
        x[n:]


@pytest.mark.parametrize("key", [slice(0.5, None), slice(None, True), slice(0, 2, 1.0)])
def test_slice_with_non_int_bounds(x, key):
    with pytest.raises(hk.GraphError, match=r"Slice bounds must be ints or None"):
        x[key]


def test_fill_with_negative_dims():
    with pytest.raises(hk.GraphError, match=r"fill needs known, non-negative dims, got \[-1\]"):
        hk.fill([-1], 1.0)


def test_fill_with_matrix_dims():
    with pytest.raises(hk.GraphError, match=r"Fill node .*dims must be 1-D, got .*\[1, 2\] int32"):
        hk.fill(hk.constant([[1, 2]]), 1.0)


def test_fill_with_vector_value():
    with pytest.raises(hk.GraphError, match=r"Fill node .*value must be a scalar, got .*\[2\] float32"):
        hk.fill([2], [1.0, 2.0])


def test_reshape_to_a_negative_dimension(x):
    with pytest.raises(hk.GraphError, match=r"Reshape node .*shape \[-2, 3\] has a negative dimension other than -1"):
        hk.reshape(x, [-2, 3])


def test_reshape_with_minus_one_that_does_not_divide(x):
    with pytest.raises(hk.GraphError, match=r"cannot reshape \[2, 3\] \(6 elements\) to \[-1, 4\]"):
        hk.reshape(x, [-1, 4])


@pytest.mark.parametrize("shape", [[1.5, 4], [True, 6], "ab"])
def test_reshape_to_non_int_dims(x, shape):
    with pytest.raises(hk.GraphError, match=r"shape must be a list of ints, got"):
        hk.reshape(x, shape)


@pytest.mark.parametrize(("fn", "what"), [
    (lambda x: hk.transpose(x, [0.0, 1.0]), "perm"),
    (lambda x: hk.transpose(x, "ab"), "perm"),
    (lambda x: hk.tile(x, None), "multiples"),
    (lambda x: hk.squeeze(x, 0.5), "axis"),
])
def test_int_list_arguments(x, fn, what):
    with pytest.raises(hk.GraphError, match=rf"{what} must be a list of ints, got"):
        fn(x)


def test_expand_dims_with_a_float_axis(x):
    with pytest.raises(hk.GraphError, match=r"ExpandDims node .*axis must be an int, got 1.5"):
        hk.expand_dims(x, 1.5)


def test_expand_dims_out_of_range(x):
    with pytest.raises(hk.GraphError, match=r"ExpandDims node .*axis 9 is out of range for rank 3"):
        hk.expand_dims(x, 9)


def test_concat_of_nothing():
    with pytest.raises(hk.GraphError, match=r"Concat node .*needs at least one input"):
        hk.concat([], 0)


def test_concat_of_different_ranks(x):
    with pytest.raises(hk.GraphError, match=r"Concat node .*inputs have different ranks: 'x:0' \[2, 3\] float32, "):
        hk.concat([x, hk.constant([1.0])], 0)


def test_stack_of_nothing():
    with pytest.raises(hk.GraphError, match=r"Pack node .*needs at least one input"):
        hk.stack([])


def test_unstack_into_the_wrong_count(x):
    with pytest.raises(hk.GraphError, match=r"Unpack node .*cannot unstack 'x:0' \[2, 3\] float32 into 5 tensors "
                                            r"along axis 0"):
        hk.unstack(x, num=5)


def test_scatter_to_dense_of_another_dtype(x):
    with pytest.raises(hk.GraphError, match=r"ScatterToDense node .*values 'x:0' .* and .*float64 have different "
                                            r"dtypes"):
        hk.scatter_to_dense(x, [0, 1], hk.zeros([3, 3], hk.float64))


def test_unsorted_segment_sum_with_mismatched_ids(x):
    with pytest.raises(hk.GraphError, match=r"UnsortedSegmentSum node .*segment_ids .*\[3\] int32 do not match the "
                                            r"leading axes of 'x:0'"):
        hk.unsorted_segment_sum(x, hk.constant([0, 1, 2]), 3)


# -- elementwise ---------------------------------------------------------------------------------
def test_add_n_of_nothing():
    with pytest.raises(hk.GraphError, match=r"AddN node .*needs at least one input"):
        hk.add_n([])


def test_add_n_of_mixed_dtypes(x):
    with pytest.raises(hk.GraphError, match=r"AddN node .*inputs have different dtypes: 'x:0' \[2, 3\] float32 and "
                                            r".*float64"):
        hk.add_n([x, hk.cast(x, hk.float64)])


def test_where_with_an_unbroadcastable_condition(x):
    with pytest.raises(hk.GraphError, match=r"Select node .*condition .*\[4\] bool cannot be broadcast with 'x:0'"):
        hk.where(hk.constant([True, False, True, False]), x, x)


# -- state ---------------------------------------------------------------------------------------
def test_assign_of_another_dtype():
    v = hk.Variable(np.zeros(3, np.float32), name="v")
    with pytest.raises(hk.GraphError, match=r"Assign node .*dtype int32 does not match float32"):
        hk.assign(v, hk.constant([1, 2, 3]))


def test_assign_of_another_shape():
    v = hk.Variable(np.zeros(3, np.float32), name="v")
    with pytest.raises(hk.GraphError, match=r"Assign node .*shape \[2\] does not match \[3\]"):
        hk.assign(v, hk.constant([1.0, 2.0]))


@pytest.mark.parametrize("fn", [hk.assign, hk.assign_add, hk.assign_sub])
def test_assign_to_a_non_variable(x, fn):
    with pytest.raises(hk.GraphError, match=r"needs a variable as its first input, got 'x:0'"):
        fn(x, x)


def test_scatter_sub_of_a_non_variable(x):
    with pytest.raises(hk.GraphError, match=r"ScatterSub needs a variable as its first input, got 'x:0'"):
        hk.scatter_sub(x, [0], x[:1])


def test_scatter_sub_with_float_indices():
    v = hk.Variable(np.zeros((3, 2), np.float32), name="v")
    with pytest.raises(hk.GraphError, match=r"ScatterSub indices must be integers, got float32"):
        hk.scatter_sub(v, hk.constant([0.0]), hk.zeros([1, 2]))


def test_fill_names_its_dims_argument(graph):
    with pytest.raises(hk.GraphError, match=r"fill: dims must be a list of ints, got \[1.5\]"):
        hk.fill([1.5], 0.0)


def test_set_random_seed_refuses_bools(graph):
    with pytest.raises(hk.GraphError, match="seed must be a non-negative int"):
        hk.set_random_seed(True)
