"""SparseTensor, sparse_placeholder, SparseTensorValue and the sparse ops text models use, against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops.registry import apply
from tests.helpers_fd import check_vjp, cover

cover("hubkit.ops.sparse_tensor", ["SparseToDense", "GatherNd"])

IDX = np.array([[0, 1], [1, 0], [1, 2], [3, 1]], np.int64)
VALS = np.array([1.5, -2.0, 3.0, 4.0], np.float32)
SHAPE = np.array([4, 3], np.int64)


def _dense():
    d = np.zeros((4, 3), np.float32)
    d[tuple(IDX.T)] = VALS
    return d


def test_feed_and_fetch_sparse_tensor_values():
    g = hk.Graph()
    with g.as_default():
        sp = hk.sparse_placeholder(hk.float32, [None, 3], name="x")
        assert sp.shape == (None, 3) and sp.dtype is hk.float32
        doubled = sp.with_values(sp.values * 2.0)
        out = hk.Session(g).run(doubled, {sp: hk.SparseTensorValue(IDX, VALS, SHAPE)})
    assert isinstance(out, hk.SparseTensorValue)
    np.testing.assert_array_equal(out.indices, IDX)
    np.testing.assert_array_equal(out.values, VALS * 2)
    np.testing.assert_array_equal(out.dense_shape, SHAPE)


def test_bad_feeds_are_refused():
    g = hk.Graph()
    with g.as_default():
        sp = hk.sparse_placeholder(hk.float32, [None, 3])
        s = hk.Session(g)
        with pytest.raises(hk.FeedError, match="outside the dense shape"):
            s.run(sp.values, {sp: hk.SparseTensorValue([[5, 0]], [1.0], [4, 3])})
        with pytest.raises(hk.FeedError, match="do not fit together"):
            s.run(sp.values, {sp: hk.SparseTensorValue([[0, 0]], [1.0, 2.0], [4, 3])})
        with pytest.raises(hk.FeedError, match="SparseTensorValue"):
            s.run(sp.values, {sp: np.zeros((4, 3))})
        unknown = hk.sparse_placeholder(hk.float32)
        assert unknown.shape is None and unknown.indices.shape == (None, None)
        out = s.run(unknown, {unknown: hk.SparseTensorValue([[0, 1, 2]], [1.0], [1, 2, 3])})
        assert out.dense_shape.tolist() == [1, 2, 3]


def test_to_dense_reduce_sum_matmul_fill_empty_rows():
    b = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    g = hk.Graph()
    with g.as_default():
        sp = hk.SparseTensor(IDX, VALS, SHAPE)
        assert sp.shape == (4, 3)
        dense = hk.sparse.to_dense(sp)
        dense_default = hk.sparse_tensor_to_dense(sp, default_value=-1.0)
        total = hk.sparse.reduce_sum(sp)
        rows = hk.sparse.reduce_sum(sp, axis=1)
        product = hk.sparse_tensor_dense_matmul(sp, b)
        product_t = hk.sparse_tensor_dense_matmul(sp, b.T, adjoint_b=True)
        filled, empty = hk.sparse.fill_empty_rows(sp, 9.0)
        res = hk.Session(g).run([dense, dense_default, total, rows, product, product_t, filled, empty])
    d = _dense()
    np.testing.assert_array_equal(res[0], d)
    assert res[1][0, 0] == -1.0 and res[1][0, 1] == 1.5
    assert res[2] == pytest.approx(d.sum())
    np.testing.assert_allclose(res[3], d.sum(1))
    np.testing.assert_allclose(res[4], d @ b, rtol=1e-6)
    np.testing.assert_allclose(res[5], d @ b, rtol=1e-6)
    np.testing.assert_array_equal(res[6].indices, [[0, 1], [1, 0], [1, 2], [2, 0], [3, 1]])
    np.testing.assert_array_equal(res[6].values, [1.5, -2.0, 3.0, 9.0, 4.0])
    np.testing.assert_array_equal(res[7], [False, False, True, False])


def test_embedding_lookup_sparse_over_a_sparse_tensor():
    table = np.arange(12, dtype=np.float32).reshape(6, 2)
    ids = hk.SparseTensorValue([[0, 0], [0, 1], [2, 0]], np.array([1, 4, 5], np.int64), [3, 2])
    weights = np.array([0.5, 2.0, 1.0], np.float32)
    g = hk.Graph()
    with g.as_default():
        sp_ids = hk.sparse_placeholder(hk.int64, [None, None])
        sp_w = hk.sparse_placeholder(hk.float32, [None, None])
        params = hk.get_variable("table", initializer=table)
        out = hk.nn.embedding_lookup_sparse(params, sp_ids, sp_w, combiner="sum")
        (grad,) = hk.gradients(hk.reduce_sum(out), [params])
        feed = {sp_ids: ids, sp_w: hk.SparseTensorValue(ids.indices, weights, ids.dense_shape)}
        res, gr = hk.Session(g).run([out, grad.to_dense()], feed)
    np.testing.assert_allclose(res, [0.5 * table[1] + 2 * table[4], [0, 0], table[5]])
    expected = np.zeros_like(table)
    expected[1], expected[4], expected[5] = 0.5, 2.0, 1.0
    np.testing.assert_allclose(gr, expected)


def test_sparse_gradients_match_finite_differences():
    check_vjp(lambda v: hk.sparse.to_dense(hk.SparseTensor(IDX, v, SHAPE)) * 2.0, [VALS], ops=["SparseToDense"])
    check_vjp(lambda p: apply("GatherNd", p, hk.constant(IDX)), [_dense()], ops=["GatherNd"])
    b = np.random.default_rng(1).standard_normal((3, 2))
    check_vjp(lambda v, m: hk.sparse_tensor_dense_matmul(hk.SparseTensor(IDX, v, SHAPE), m), [VALS, b])


@pytest.mark.parametrize("strategy", ["mod", "div"])
def test_embedding_lookup_sparse_tf_argument_names_and_partitioned_params(strategy):
    table = np.arange(14, dtype=np.float32).reshape(7, 2)
    n = 3
    parts_values = [table[i::n] for i in range(n)] if strategy == "mod" else np.array_split(table, n)
    ids = hk.SparseTensorValue([[0, 0], [0, 1], [1, 0]], np.array([1, 6, 4], np.int64), [2, 2])
    g = hk.Graph()
    with g.as_default():
        parts = [hk.constant(p) for p in parts_values]
        sp = hk.sparse_placeholder(hk.int64)
        out = hk.nn.embedding_lookup_sparse(parts, sp_ids=sp, sp_weights=None, combiner=None,
                                            partition_strategy=strategy)
        res = hk.Session(g).run(out, {sp: ids})
    np.testing.assert_allclose(res, [(table[1] + table[6]) / 2, table[4]])


def test_from_dense_round_trip_and_gradient():
    d = _dense()
    g = hk.Graph()
    with g.as_default():
        sp = hk.sparse.from_dense(hk.constant(d))
        back = hk.sparse.to_dense(sp)
        res = hk.Session(g).run([sp, back])
    np.testing.assert_array_equal(res[0].indices, IDX)
    np.testing.assert_array_equal(res[0].values, VALS)
    np.testing.assert_array_equal(res[1], d)
    # No zero entries, so a finite-difference step never changes which entries are kept.
    check_vjp(lambda x: hk.sparse.from_dense(x).values * 3.0, [d + 5.0], ops=["GatherNd"])
