"""Sparse and ragged signature inputs and outputs (TFHubSparseTensorModuleTest, TFHubRaggedTensorModuleTest)."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


def sparse_square_module_fn():
    x = hk.sparse_placeholder(dtype=hk.int64, name="x")  # unknown rank, as TF Hub's test module
    hk.add_signature(inputs=x, outputs=hk.SparseTensor(x.indices, x.values * x.values, x.dense_shape))


def ragged_square_module_fn():
    x = hk.ragged_placeholder(hk.int64, name="x")
    hk.add_signature(inputs=x, outputs=x.with_values(x.values * x.values))


def sparse_sum_module_fn():
    x = hk.sparse_placeholder(hk.float32, [None, 3], name="x")
    w = hk.get_variable("w", [3, 2], initializer=hk.initializers.constant(0.5))
    hk.add_signature(inputs={"x": x}, outputs={"default": hk.sparse_tensor_dense_matmul(x, w),
                                               "total": hk.sparse.reduce_sum(x)})


INDICES, VALUES, SHAPE = [[0, 0], [0, 1], [1, 1]], [10, 2, 1], [2, 2]


def test_sparse_tensors_through_a_module_symbolically():
    spec = hk.create_module_spec(sparse_square_module_fn)
    info = spec.get_input_info_dict()["default"]
    assert info.is_sparse and info.is_composite and info.dtype is hk.int64 and info.get_shape() is None
    assert spec.get_output_info_dict()["default"].is_sparse
    g = hk.Graph()
    with g.as_default():
        square = hk.Module(spec)
        v = hk.sparse_placeholder(dtype=hk.int64, name="v")
        y = square(v)
        assert isinstance(y, hk.SparseTensor)
        sess = hk.Session(g)
        v2 = sess.run(y, {v: hk.SparseTensorValue(INDICES, VALUES, SHAPE)})
        v4 = sess.run(y, {v: v2})
    np.testing.assert_array_equal(v4.indices, INDICES)
    np.testing.assert_array_equal(v4.values, [t**4 for t in VALUES])
    np.testing.assert_array_equal(v4.dense_shape, SHAPE)


def test_sparse_tensor_values_eagerly_and_after_export(tmp_path):
    m = hk.Module(hk.create_module_spec(sparse_square_module_fn))
    out = m(hk.SparseTensorValue(INDICES, VALUES, SHAPE))
    assert isinstance(out, hk.SparseTensorValue)
    np.testing.assert_array_equal(out.values, [100, 4, 1])
    m.export(str(tmp_path / "m"))
    loaded = hk.Module(str(tmp_path / "m"))
    assert loaded.get_input_info_dict()["default"].is_sparse
    np.testing.assert_array_equal(loaded({"default": out}).values, [10**4, 16, 1])
    with pytest.raises(TypeError, match="SparseTensorValue"):
        loaded(np.zeros((2, 2), np.int64))


def test_sparse_input_with_dense_outputs_and_variables():
    m = hk.Module(hk.create_module_spec(sparse_sum_module_fn))
    x = hk.SparseTensorValue([[0, 0], [1, 2]], np.array([1.0, 4.0], np.float32), [2, 3])
    dense = np.array([[1.0, 0, 0], [0, 0, 4.0]], np.float32)
    out = m({"x": x}, as_dict=True)
    np.testing.assert_allclose(out["default"], dense @ np.full((3, 2), 0.5))
    assert out["total"] == 5.0
    assert sorted(m.get_input_info_dict()) == ["x"]


def test_ragged_square_symbolic_eager_and_exported(tmp_path):
    spec = hk.create_module_spec(ragged_square_module_fn)
    info = spec.get_input_info_dict()["default"]
    assert info.is_composite and not info.is_sparse and info.dtype is hk.int64
    g = hk.Graph()
    with g.as_default():
        square = hk.Module(spec)
        v = hk.ragged_placeholder(hk.int64, name="v")
        y = square(v)
        sess = hk.Session(g)
        v2 = sess.run(y, {v: [[10, 2], [1]]})
        v4 = sess.run(y, {v: v2})
    np.testing.assert_array_equal(v4.row_ids, [0, 0, 1])
    assert v4.to_list() == [[10**4, 16], [1]]
    hk.Module(spec).export(str(tmp_path / "r"))
    eager = hk.Module(str(tmp_path / "r"))([[3], [], [1, 2]])
    assert isinstance(eager, hk.RaggedTensorValue) and eager.to_list() == [[9], [], [1, 4]]
    with pytest.raises(TypeError, match="non-decreasing"):
        hk.Module(spec)(hk.RaggedTensorValue([1, 2], [1, 0], 2))


def test_ragged_from_row_splits_as_a_signature_output():
    def module_fn():
        values = hk.placeholder(hk.float32, [None], name="values")
        splits = hk.placeholder(hk.int64, [None], name="splits")
        hk.add_signature(inputs={"values": values, "splits": splits},
                         outputs=hk.ragged_from_row_splits(values * 2.0, splits))

    m = hk.Module(hk.create_module_spec(module_fn))
    assert m.get_output_info_dict()["default"].is_composite
    out = m({"values": np.array([1.0, 2.0, 3.0], np.float32), "splits": np.array([0, 1, 1, 3], np.int64)})
    assert out.to_list() == [[2.0], [], [4.0, 6.0]]
    with pytest.raises(hk.OpError, match="row_splits"):
        m({"values": np.array([1.0], np.float32), "splits": np.array([1, 0], np.int64)})
