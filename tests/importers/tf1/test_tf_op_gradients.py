"""Gradients of the TF-exact ops (hubkit/ops/tf_*.py) against finite differences, in float64."""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.ops.registry import apply
from tests.helpers_fd import check_vjp, cover

_r = np.random.default_rng(7)


def _n(*shape):
    return _r.standard_normal(shape)


def _i32(*values):
    return np.array(values, dtype=np.int32)


def _i64(*values):
    return np.array(values, dtype=np.int64)


def _distinct(*shape):
    n = int(np.prod(shape))
    return ((_r.permutation(n) + 1.0) * 0.37 * _r.choice([-1, 1], n)).reshape(shape)


_CONV = {"strides": [1, 2, 1, 1], "padding": "SAME", "explicit_paddings": [], "dilations": [1, 1, 1, 1],
         "data_format": "NHWC"}
_CONV_EXPLICIT = {"strides": [1, 1, 1, 1], "padding": "EXPLICIT", "explicit_paddings": [0, 0, 1, 0, 0, 2, 0, 0],
                  "dilations": [1, 2, 1, 1], "data_format": "NHWC"}
_POOL = {"ksize": [1, 2, 3, 1], "strides": [1, 2, 2, 1], "padding": "SAME", "explicit_paddings": []}

# (family, op types, function of the placeholders, inputs)
CASES = [
    ("hubkit.ops.tf_array", ["TfReshape"], lambda x: apply("TfReshape", x, _i32(3, -1)), [_n(2, 3)]),
    ("hubkit.ops.tf_array", ["TfExpandDims"], lambda x: apply("TfExpandDims", x, np.int32(-1)), [_n(2, 3)]),
    ("hubkit.ops.tf_array", ["TfSqueeze"], lambda x: apply("TfSqueeze", x, squeeze_dims=[1]), [_n(2, 1, 3)]),
    ("hubkit.ops.tf_array", ["TfTranspose"], lambda x: apply("TfTranspose", x, _i32(2, 0, 1)), [_n(2, 3, 4)]),
    ("hubkit.ops.tf_array", ["TfConcat"], lambda a, b: apply("TfConcat", a, b, np.int32(1)), [_n(2, 3), _n(2, 2)]),
    ("hubkit.ops.tf_array", ["TfPack"], lambda a, b: apply("TfPack", a, b, axis=1), [_n(2, 3), _n(2, 3)]),
    ("hubkit.ops.tf_array", ["TfTakeIndex"], lambda a: apply("TfTakeIndex", a, axis=1, index=2), [_n(2, 3)]),
    ("hubkit.ops.tf_array", ["TfUnpack"], lambda a: apply("TfUnpack", a, num=3, axis=1)[1], [_n(2, 3)]),
    ("hubkit.ops.tf_array", ["TfFill"], lambda v: apply("TfFill", _i32(2, 3), v), [np.array(0.7)]),
    ("hubkit.ops.tf_array", ["TfTile"], lambda x: apply("TfTile", x, _i32(2, 3)), [_n(2, 2)]),
    ("hubkit.ops.tf_index", ["TfSlice"], lambda x: apply("TfSlice", x, _i32(1, 0), _i32(1, -1)), [_n(3, 4)]),
    ("hubkit.ops.tf_index", ["TfStridedSlice"],
     lambda x: apply("TfStridedSlice", x, _i32(0, 1, 0), _i32(0, 4, 0), _i32(1, 2, 1), begin_mask=1, end_mask=1,
                     ellipsis_mask=4, new_axis_mask=0, shrink_axis_mask=0), [_n(2, 5, 3)]),
    ("hubkit.ops.tf_index", ["TfGather"], lambda p: apply("TfGather", p, _i64(2, 0, 2), np.int32(0)), [_n(3, 2)]),
    ("hubkit.ops.tf_index", ["TfSelect"], lambda a, b: apply("TfSelect", np.array([True, False]), a, b),
     [_n(2, 3), _n(2, 3)]),
    ("hubkit.ops.tf_array", ["TfPad"], lambda x: apply("TfPad", x, _i32(1, 0, 0, 2)), [_n(2, 3)]),
    ("hubkit.ops.tf_array", ["TfPad"], lambda x: apply("TfPad", x, _i32(2, 1, 0, 2), mode="REFLECT"), [_n(3, 3)]),
    ("hubkit.ops.tf_array", ["TfPad"], lambda x: apply("TfPad", x, _i32(2, 1, 1, 2), mode="SYMMETRIC"), [_n(3, 3)]),
    ("hubkit.ops.tf_array", ["TfSplit"], lambda x: apply("TfSplit", np.int32(1), x, num_split=2)[1], [_n(2, 4)]),
    ("hubkit.ops.tf_array", ["TfSplit"], lambda x: apply("TfSplit", x, _i32(1, -1), np.int32(0), num_split=2, v2=True)[1],
     [_n(3, 2)]),
    ("hubkit.ops.tf_math", ["TfReduce"], lambda x: apply("TfReduce", x, _i32(1), reduction="mean", keep_dims=True),
     [_n(2, 3)]),
    ("hubkit.ops.tf_math", ["TfBatchMatMul"],
     lambda a, b: apply("TfBatchMatMul", a, b, adj_x=False, adj_y=True, broadcast=True), [_n(2, 3, 4), _n(1, 5, 4)]),
    ("hubkit.ops.tf_nn", ["TfConv2D"], lambda x, w: apply("TfConv2D", x, w, depthwise=False, **_CONV),
     [_n(1, 5, 4, 2), _n(3, 2, 2, 3)]),
    ("hubkit.ops.tf_nn", ["TfConv2D"], lambda x, w: apply("TfConv2D", x, w, depthwise=True, **_CONV_EXPLICIT),
     [_n(1, 4, 4, 2), _n(2, 2, 2, 2)]),
    ("hubkit.ops.tf_nn", ["TfPool"], lambda x: apply("TfPool", x, kind="max", **_POOL), [_distinct(1, 4, 5, 2)]),
    ("hubkit.ops.tf_nn", ["TfPool"], lambda x: apply("TfPool", x, kind="avg", **_POOL), [_n(1, 4, 5, 2)]),
    ("hubkit.ops.tf_nn", ["TfFusedBatchNorm"],
     lambda x, s, o: apply("TfFusedBatchNorm", x, s, o, np.zeros(2), np.zeros(2), epsilon=1e-3, is_training=True,
                           num_outputs=6)[0], [_n(2, 2, 3, 2), _n(2), _n(2)]),
    ("hubkit.ops.tf_nn", ["TfFusedBatchNorm"],
     lambda x, s, o: apply("TfFusedBatchNorm", x, s, o, np.array([0.1, -0.2]), np.array([0.5, 2.0]), epsilon=1e-3,
                           is_training=False, num_outputs=5)[0], [_n(2, 2, 3, 2), _n(2), _n(2)]),
    ("hubkit.ops.tf_sparse", ["TfSparseSegmentReduce"],
     lambda d: apply("TfSparseSegmentReduce", d, _i64(0, 2, 2, 1), _i64(0, 0, 2, 2), reduction="sqrtn"), [_n(3, 2)]),
    ("hubkit.ops.tf_sparse", ["TfSparseFillEmptyRows"],
     lambda v, d: apply("TfSparseFillEmptyRows", np.array([[0, 0], [2, 0]], np.int64), v, _i64(3, 2), d)[1],
     [_n(2), np.array(0.5)]),
    ("hubkit.ops.tf_sparse", ["TfDynamicPartition"],
     lambda d: apply("TfDynamicPartition", d, _i32(1, 0, 1), num_partitions=2)[1], [_n(3, 2)]),
    ("hubkit.ops.tf_sparse", ["TfDynamicStitch"],
     lambda a, b: apply("TfDynamicStitch", _i32(0, 2), _i32(1), a, b), [_n(2, 2), _n(1, 2)]),
]

for _family, _ops, _, _ in CASES:
    cover(_family, _ops)


@pytest.mark.parametrize("family, ops, fn, inputs", CASES, ids=[f"{c[1][0]}-{i}" for i, c in enumerate(CASES)])
def test_gradient_matches_finite_differences(family, ops, fn, inputs):
    check_vjp(fn, [np.array(a, copy=True) for a in inputs], ops=ops)
