"""embedding_lookup_sparse: combiner math against NumPy, sparse gradients against dense ones."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.runtime import IndexedSlices
from tests.helpers_fd import cover

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


cover("hubkit.ops.sparse", ["EmbeddingLookupSparse"])  # its vjp, checked by the test below


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


def run_fed(ids, row_ids, num_rows, weights=None, combiner="sum", grad=False):
    """Runs the op on placeholders of unknown length, so only the kernels' own checks can refuse."""
    g = hk.Graph()
    with g.as_default():
        params = hk.Variable(np.arange(12, dtype=np.float32).reshape(4, 3), name="p")
        ids_p, rows_p = hk.placeholder(hk.int64, [None]), hk.placeholder(hk.int64, [None])
        n_p = hk.placeholder(hk.int64, [])
        w_p = None if weights is None else hk.placeholder(hk.float32, [None])
        out = hk.nn.embedding_lookup_sparse(params, (ids_p, rows_p, n_p), weights=w_p, combiner=combiner)
        fetch = out
        if grad:
            (gr,) = hk.gradients(hk.reduce_sum(out), [params])
            fetch = [gr.values, gr.indices]
    feed = {ids_p: np.asarray(ids, np.int64), rows_p: np.asarray(row_ids, np.int64), n_p: num_rows}
    if weights is not None:
        feed[w_p] = np.asarray(weights, np.float32)
    return hk.Session(g).run(fetch, feed)


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize(
    ("ids", "row_ids", "weights", "message"),
    [
        ([0, 1, 2], [0, 0, 1], [1.0], "ids has 3 values, row_ids 3, weights 1; they must be equal"),
        ([0, 1, 2], [0, 0, 1], [1.0, 2.0, 3.0, 4.0], "ids has 3 values, row_ids 3, weights 4"),
        ([0, 1, 2, 3], [0, 0], None, "ids has 4 values, row_ids 2; they must be equal"),
        ([0], [0, 1, 1], None, "ids has 1 values, row_ids 3; they must be equal"),
    ],
)
def test_lengths_that_differ_are_refused_before_any_kernel(kernels, combiner, grad, ids, row_ids, weights, message):
    with pytest.raises(hk.OpError, match=message):
        run_fed(ids, row_ids, 2, weights, combiner, grad)


def test_many_ids_with_one_weight_never_read_past_the_weights(kernels):
    # The Numba kernel read weights[m] for every id: 5,000,000 ids and one weight crashed the process.
    ids = np.zeros(5_000_000, np.int64)
    with pytest.raises(hk.OpError, match="ids has 5000000 values, row_ids 5000000, weights 1"):
        run_fed(ids, ids, 1, [1.0], "mean")


def test_negative_num_rows_is_an_op_error(kernels):
    with pytest.raises(hk.OpError, match="num_rows must be >= 0, got -1"):
        run_fed([0], [0], -1)


def _grad_op(g_value, ids, row_ids, weights=None, combiner="sum"):
    from hubkit.ops.registry import apply

    graph = hk.Graph()
    with graph.as_default():
        extra = [] if weights is None else [hk.constant(np.asarray(weights, np.float64))]
        args = [hk.placeholder(hk.float64, None), hk.placeholder(hk.int64, None), hk.placeholder(hk.int64, None)]
        values, indices = apply("EmbeddingLookupSparseGrad", *args, *extra, combiner=combiner)
    feed = dict(zip(args, (np.asarray(g_value, np.float64), np.asarray(ids, np.int64), np.asarray(row_ids, np.int64))))
    return hk.Session(graph).run([values, indices], feed)


@pytest.mark.parametrize("bad_row", [2, 7, -1, -(2**40)])
@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
def test_gradient_refuses_rows_outside_the_upstream_gradient(kernels, bad_row, combiner):
    # The Numba gradient kernel indexed its scratch and grad by these rows unchecked; NumPy wrapped -1.
    with pytest.raises(hk.OpError, match=rf"row {bad_row} of value 1 is outside \[0, 2\)"):
        _grad_op(np.ones((2, 3)), [0, 1, 2], [0, bad_row, 1], combiner=combiner)


def test_gradient_ignores_the_rows_of_skipped_ids(kernels):
    values, indices = _grad_op(np.ones((2, 3)), [0, -1, 2], [0, 9, 1], combiner="mean")
    assert indices.tolist() == [0, 2] and values.tolist() == [[1.0] * 3, [1.0] * 3]


def test_gradient_op_refuses_lengths_that_differ(kernels):
    with pytest.raises(hk.OpError, match="ids has 2 values, row_ids 2, weights 3; they must be equal"):
        _grad_op(np.ones((2, 3)), [0, 1], [0, 1], weights=[1.0, 2.0, 3.0])


def test_static_lengths_that_differ_are_a_graph_error():
    g = hk.Graph()
    with g.as_default():
        table = hk.constant(np.ones((4, 2), np.float32))
        rag = hk.text.RaggedTensor(hk.constant([0, 1, 2], hk.int64), hk.constant([0, 0, 1], hk.int64),
                                   hk.constant(2, hk.int64))
        with pytest.raises(hk.GraphError, match=r"got ids \[3\], row_ids \[3\], weights \[1\]"):
            hk.nn.embedding_lookup_sparse(table, rag, weights=hk.constant([1.0]))
        with pytest.raises(hk.GraphError, match=r"got ids \[3\], row_ids \[2\]"):
            hk.nn.embedding_lookup_sparse(table, (rag.values, hk.constant([0, 1], hk.int64), rag.num_rows))
        with pytest.raises(hk.GraphError, match=r"weights \[3, 1\]"):
            hk.nn.embedding_lookup_sparse(table, rag, weights=hk.constant(np.ones((3, 1), np.float32)))
        ok = hk.nn.embedding_lookup_sparse(table, rag, weights=hk.placeholder(hk.float32, [None]))
    assert ok.shape == (None, 2)
