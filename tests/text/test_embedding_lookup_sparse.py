"""embedding_lookup_sparse: combiner math against NumPy, sparse gradients against dense ones."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.runtime import IndexedSlices

RNG = np.random.default_rng(7)


def reference(params, ids, row_ids, num_rows, weights, combiner):
    """Row by row, in float64, straight from the definition."""
    out = np.zeros((num_rows, *params.shape[1:]))
    for r in range(num_rows):
        sel = [m for m in range(len(ids)) if row_ids[m] == r and ids[m] >= 0]
        w = np.ones(len(ids)) if weights is None else np.asarray(weights, np.float64)
        total = sum((w[m] * params[ids[m]].astype(np.float64) for m in sel), np.zeros(params.shape[1:]))
        if combiner == "mean":
            den = sum(w[m] for m in sel)
        elif combiner == "sqrtn":
            den = np.sqrt(sum(w[m] ** 2 for m in sel))
        else:
            den = 1.0
        out[r] = total / den if den else 0.0
    return out


def build(params_value, ids, row_ids, num_rows, weights, combiner, variable=False):
    g = hk.Graph()
    with g.as_default():
        dt = hk.as_dtype(params_value.dtype)
        params = hk.Variable(params_value, name="emb", dtype=dt) if variable else hk.constant(params_value, dt)
        rag = hk.text.RaggedTensor(
            hk.constant(np.asarray(ids, np.int64)), hk.constant(np.asarray(row_ids, np.int64)),
            hk.constant(num_rows, hk.int64),
        )
        w = None if weights is None else hk.constant(np.asarray(weights), dt)
        out = hk.nn.embedding_lookup_sparse(params, rag, weights=w, combiner=combiner)
    return g, params, out


CASES = [
    # ids, row_ids, num_rows, weights
    ([0, 2, 1, 4], [0, 0, 2, 2], 4, None),  # empty rows 1 and 3 (3 is trailing)
    ([3, 3, 3], [1, 1, 1], 2, None),  # a repeated id
    ([1, 0, 2, 4], [2, 0, 2, 1], 3, None),  # unsorted row ids
    ([0, 2, 1, 4], [0, 0, 1, 1], 2, [0.5, 2.0, -1.0, 3.0]),  # weights
    ([0, -1, 1, -1], [0, 0, 1, 2], 3, [1.0, 5.0, 2.0, 3.0]),  # ids < 0 are skipped with their weights
    ([], [], 3, None),  # no ids at all
]


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize(("ids", "row_ids", "num_rows", "weights"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_combiners_match_reference(kernels, combiner, ids, row_ids, num_rows, weights, dtype):
    params = RNG.normal(size=(5, 3)).astype(dtype)
    g, _, out = build(params, ids, row_ids, num_rows, weights, combiner)
    got = hk.Session(g).run(out)
    assert got.dtype == dtype and got.shape == (num_rows, 3)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, reference(params, ids, row_ids, num_rows, weights, combiner), rtol=tol, atol=tol)


def test_rows_of_higher_rank(kernels):
    params = RNG.normal(size=(4, 2, 3)).astype(np.float32)
    g, _, out = build(params, [0, 3, 1], [0, 0, 1], 2, None, "mean")
    got = hk.Session(g).run(out)
    assert got.shape == (2, 2, 3)
    np.testing.assert_allclose(got, reference(params, [0, 3, 1], [0, 0, 1], 2, None, "mean"), rtol=1e-6)


def test_out_of_range_id_is_an_op_error(kernels):
    g, _, out = build(np.ones((3, 2), np.float32), [0, 3], [0, 0], 1, None, "sum")
    with pytest.raises(hk.OpError, match=r"id 3 .* outside params with 3 rows"):
        hk.Session(g).run(out)


def test_bad_arguments_while_building():
    g = hk.Graph()
    with g.as_default():
        rag = hk.text.RaggedTensor(hk.constant([0]), hk.constant([0], hk.int64), hk.constant(1, hk.int64))
        with pytest.raises(hk.GraphError, match=r"unknown combiner 'max'; expected one of \['mean', 'sqrtn', 'sum'\]"):
            hk.nn.embedding_lookup_sparse(hk.constant([[1.0]]), rag, combiner="max")
        with pytest.raises(hk.GraphError, match="RaggedTensor"):
            hk.nn.embedding_lookup_sparse(hk.constant([[1.0]]), hk.constant([0]))
        with pytest.raises(hk.GraphError, match="params must be floating-point"):
            hk.nn.embedding_lookup_sparse(hk.constant([[1]]), rag)


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize(("ids", "row_ids", "num_rows", "weights"), CASES)
def test_gradient_is_sparse_and_matches_the_dense_gradient(kernels, combiner, ids, row_ids, num_rows, weights):
    params = RNG.normal(size=(5, 3))
    upstream = RNG.normal(size=(num_rows, 3))
    g, p, out = build(params, ids, row_ids, num_rows, weights, combiner)
    with g.as_default():
        loss = hk.reduce_sum(out * hk.constant(upstream, hk.float64))
        (grad,) = hk.gradients(loss, [p])
    assert isinstance(grad, IndexedSlices)
    values, indices = hk.Session(g).run([grad.values, grad.indices])
    assert set(indices.tolist()) == {i for i in ids if i >= 0}  # only the rows used, never a -1
    dense = np.zeros_like(params)
    np.add.at(dense, indices, values)
    # The loss is linear in params: its gradient is the reference combiner applied to one-hot tables.
    expected = np.zeros_like(params)
    for v in range(params.shape[0]):
        for d in range(params.shape[1]):
            unit = np.zeros_like(params)
            unit[v, d] = 1.0
            expected[v, d] = np.sum(reference(unit, ids, row_ids, num_rows, weights, combiner) * upstream)
    np.testing.assert_allclose(dense, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hk.Session(g).run(grad.to_dense()), expected, rtol=1e-10, atol=1e-12)


def test_finite_differences_through_a_nonlinear_loss(kernels):
    params = RNG.normal(size=(6, 4))
    ids, row_ids = [0, 5, 2, 2, 3], [0, 0, 1, 1, 2]
    g, p, out = build(params, ids, row_ids, 3, [1.0, 0.5, 2.0, 1.0, 3.0], "sqrtn")
    with g.as_default():
        loss = hk.reduce_sum(hk.square(out))
        (grad,) = hk.gradients(loss, [p])
    sess = hk.Session(g)
    analytic = sess.run(grad.to_dense())
    eps = 1e-6
    numeric = np.zeros_like(params)
    for idx in np.ndindex(params.shape):
        for sign in (1, -1):
            shifted = params.copy()
            shifted[idx] += sign * eps
            g2, _, out2 = build(shifted, ids, row_ids, 3, [1.0, 0.5, 2.0, 1.0, 3.0], "sqrtn")
            numeric[idx] += sign * np.sum(hk.Session(g2).run(out2) ** 2) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("optimizer", ["GradientDescent", "Adam", "Adagrad"])
def test_optimizer_step_leaves_unused_rows_bitwise_unchanged(kernels, optimizer):
    params = RNG.normal(size=(50, 8)).astype(np.float32)
    ids, row_ids = [3, 7, 7, 20], [0, 0, 1, 1]
    g, _, out = build(params, ids, row_ids, 2, None, "sqrtn", variable=True)
    with g.as_default():
        loss = hk.reduce_sum(hk.square(out))
        step = getattr(hk.train, optimizer)(0.1).minimize(loss)
    emb = g.variables["emb"]
    before = emb.numpy()
    sess = hk.Session(g)
    for _ in range(3):
        sess.run(step)
    after = emb.numpy()
    used = sorted(set(ids))
    untouched = np.setdiff1d(np.arange(50), used)
    assert after[untouched].tobytes() == before[untouched].tobytes()
    assert not np.allclose(after[used], before[used])


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_numpy_combiner_in_small_blocks(monkeypatch, chunk):
    """The NumPy kernel gathers rows block by block; block edges must not split or drop rows."""
    from hubkit.ops import sparse

    monkeypatch.setattr(sparse, "_CHUNK", chunk)
    params = RNG.normal(size=(9, 4))
    ids = RNG.integers(-1, 9, size=40)
    row_ids = np.sort(RNG.integers(0, 12, size=40))
    weights = RNG.random(40) + 0.1
    for combiner in ("sum", "mean", "sqrtn"):
        code = sparse.COMBINERS[combiner]
        got = sparse.combine_numpy(params, ids, row_ids, 13, weights, code)
        want = reference(params, ids, row_ids, 13, weights, combiner)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
