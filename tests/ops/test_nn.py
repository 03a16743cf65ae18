"""hubkit.nn forward values against NumPy formulas, dropout statistics and error messages."""

import math

import numpy as np
import pytest

import hubkit as hk


@pytest.fixture(autouse=True)
def fresh_graph():
    g = hk.Graph()
    with g.as_default():
        yield g


def run(fetches, feeds=None):
    return hk.Session(hk.get_default_graph()).run(fetches, feeds or {})


X = np.array([[-7.0, -1.5, -0.25, 0.0, 0.5, 3.0, 6.5]], dtype=np.float32)
_erf = np.vectorize(math.erf)

ACTIVATIONS = {
    "relu": (hk.nn.relu, lambda x: np.maximum(x, 0)),
    "relu6": (hk.nn.relu6, lambda x: np.minimum(np.maximum(x, 0), 6)),
    "leaky_relu": (hk.nn.leaky_relu, lambda x: np.where(x > 0, x, 0.2 * x)),
    "elu": (hk.nn.elu, lambda x: np.where(x > 0, x, np.exp(x) - 1)),
    "gelu": (hk.nn.gelu, lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2)))),
    "gelu_tanh": (
        lambda x: hk.nn.gelu(x, approximate=True),
        lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    ),
    "sigmoid": (hk.nn.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (hk.nn.tanh, np.tanh),
    "softplus": (hk.nn.softplus, lambda x: np.log1p(np.exp(x))),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_numpy(name):
    fn, ref = ACTIVATIONS[name]
    y = fn(hk.constant(X))
    got = run(y)
    assert got.dtype == np.float32 and y.shape == X.shape
    np.testing.assert_allclose(got, ref(X.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_leaky_relu_alpha_and_relu_rejects_strings():
    got = run(hk.nn.leaky_relu(hk.constant([-2.0, 3.0]), alpha=0.5))
    np.testing.assert_allclose(got, [-1.0, 3.0])
    with pytest.raises(hk.GraphError, match="float32 or float64"):
        hk.nn.relu(hk.constant(["a"]))


def test_softmax_and_log_softmax_are_stable_for_huge_logits():
    logits = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]], np.float32)
    p, lp = run([hk.nn.softmax(hk.constant(logits)), hk.nn.log_softmax(hk.constant(logits))])
    shifted = logits.astype(np.float64) - logits.max(1, keepdims=True)
    want = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    np.testing.assert_allclose(p, want, rtol=1e-6)
    np.testing.assert_allclose(lp, shifted - np.log(np.exp(shifted).sum(1, keepdims=True)), rtol=1e-6)
    assert np.all(np.isfinite(lp))


def test_softmax_along_another_axis_and_axis_errors():
    x = np.random.default_rng(0).standard_normal((3, 4))
    p = run(hk.nn.softmax(hk.constant(x, hk.float64), axis=0))
    np.testing.assert_allclose(p.sum(axis=0), np.ones(4))
    with pytest.raises(hk.GraphError, match="axis 2 is out of range"):
        hk.nn.softmax(hk.constant(x), axis=2)
    with pytest.raises(hk.GraphError, match="LogSoftmax node 'LogSoftmax': axis -3 is out of range"):
        hk.nn.log_softmax(hk.constant(x), axis=-3)


# -- dropout -------------------------------------------------------------------------------------------
def test_dropout_statistics():
    x = hk.constant(np.ones((400, 500), np.float32))
    y = run(hk.nn.dropout(x, 0.3, seed=7))
    assert y.dtype == np.float32
    dropped = np.mean(y == 0)
    assert abs(dropped - 0.3) < 0.01  # 200,000 draws: the standard deviation is 0.001
    np.testing.assert_allclose(np.unique(y[y != 0]), [1 / 0.7], rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.02  # kept units are scaled so the mean is preserved


def test_dropout_not_training_is_the_identity():
    x = hk.placeholder(hk.float32, [None, 3])
    assert hk.nn.dropout(x, 0.5, training=False) is x
    training = hk.placeholder(hk.bool, [])
    y = hk.nn.dropout(x, 0.5, training=training)
    xv = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    np.testing.assert_array_equal(run(y, {x: xv, training: False}), xv)
    on = run(y, {x: xv, training: True})
    assert np.all((on == 0) | np.isclose(on, 2 * xv))


def test_dropout_is_reproducible_with_seeds_and_fresh_per_run():
    def masks(graph_seed, op_seed):
        g = hk.Graph()
        with g.as_default():
            if graph_seed is not None:
                hk.set_random_seed(graph_seed)
            y = hk.nn.dropout(hk.constant(np.ones((20, 20), np.float32)), 0.5, seed=op_seed)
        s = hk.Session(g)
        return s.run(y), s.run(y)

    a1, a2 = masks(None, 5)
    b1, b2 = masks(None, 5)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)  # one stream per plan, continued by each run
    c1, _ = masks(3, None)
    d1, _ = masks(3, None)
    np.testing.assert_array_equal(c1, d1)
    assert not np.array_equal(masks(3, 6)[0], masks(4, 6)[0])


def test_dropout_noise_shape_drops_whole_rows():
    y = run(hk.nn.dropout(hk.constant(np.ones((64, 8), np.float32)), 0.5, noise_shape=[None, 1], seed=1))
    assert all(len(set(row)) == 1 for row in y.tolist())
    assert 0 < np.mean(y[:, 0] == 0) < 1


def test_dropout_rejects_bad_arguments():
    x = hk.placeholder(hk.float32, [None, 4])
    with pytest.raises(hk.GraphError, match=r"\[0, 1\)"):
        hk.nn.dropout(x, 1.0)
    with pytest.raises(hk.GraphError, match="noise_shape"):
        hk.nn.dropout(x, 0.5, noise_shape=[None, 3])
    with pytest.raises(hk.GraphError, match="bool scalar"):
        hk.nn.dropout(x, 0.5, training=hk.placeholder(hk.bool, [2]))
    with pytest.raises(hk.GraphError, match="seed"):
        hk.nn.dropout(x, 0.5, seed=-1)


# -- bias, embeddings, normalisation -------------------------------------------------------------------
def test_bias_add_and_its_shape_check():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = np.array([1, 2, 3, 4], np.float32)
    np.testing.assert_array_equal(run(hk.nn.bias_add(hk.constant(x), hk.constant(b))), x + b)
    with pytest.raises(hk.GraphError) as e:
        hk.nn.bias_add(hk.constant(x), hk.constant(np.zeros(3, np.float32)))
    assert "[3]" in str(e.value) and "[2, 3, 4]" in str(e.value)


def test_embedding_lookup_gathers_rows_with_a_sparse_gradient():
    params = np.arange(15, dtype=np.float32).reshape(5, 3)
    p = hk.constant(params)
    ids = np.array([[4, 0], [4, 2]])
    y = hk.nn.embedding_lookup(p, ids)
    assert y.shape == (2, 2, 3)
    np.testing.assert_array_equal(run(y), params[ids])
    (grad,) = hk.gradients(hk.reduce_sum(y), [p])
    assert isinstance(grad, hk.IndexedSlices)
    dense = run(grad.to_dense())
    np.testing.assert_array_equal(dense[:, 0], [1, 0, 1, 0, 2])


def test_moments_and_batch_normalization_match_tf_formulas():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 5))
    xt = hk.constant(x, hk.float64)
    mean, var = hk.nn.moments(xt, axes=[0])
    mk, vk = hk.nn.moments(xt, axes=0, keepdims=True)
    assert mean.shape == (5,) and mk.shape == (1, 5)
    m, v, m2, v2 = run([mean, var, mk, vk])
    np.testing.assert_allclose(m, x.mean(0))
    np.testing.assert_allclose(v, x.var(0))
    np.testing.assert_allclose(m2, x.mean(0, keepdims=True))
    np.testing.assert_allclose(v2, x.var(0, keepdims=True))
    scale, offset = rng.standard_normal(5), rng.standard_normal(5)
    y = hk.nn.batch_normalization(xt, mean, var, hk.constant(offset, hk.float64), hk.constant(scale, hk.float64), 1e-3)
    want = scale * (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3) + offset
    np.testing.assert_allclose(run(y), want, rtol=1e-10)
    y_plain = hk.nn.batch_normalization(xt, mean, var, None, None, 1e-3)
    np.testing.assert_allclose(run(y_plain), (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3), rtol=1e-10)


def test_layer_norm_and_l2_normalize():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    gamma, beta = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    y = run(hk.nn.layer_norm(hk.constant(x), hk.constant(gamma), hk.constant(beta), epsilon=1e-5))
    want = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5) * gamma + beta
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    n = run(hk.nn.l2_normalize(hk.constant(x), axis=1))
    np.testing.assert_allclose(n, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-5)
    zero = run(hk.nn.l2_normalize(hk.constant(np.zeros(3, np.float32))))
    np.testing.assert_array_equal(zero, np.zeros(3))


# -- fused cross-entropies -----------------------------------------------------------------------------
def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_sparse_softmax_cross_entropy_with_logits():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 4)) * 50  # large logits: the fused op stays finite
    labels = np.array([0, 3, 1, 1, 2, 0])
    loss = hk.nn.sparse_softmax_cross_entropy_with_logits(labels, hk.constant(logits, hk.float64))
    assert loss.shape == (6,)
    np.testing.assert_allclose(run(loss), -_log_softmax(logits)[np.arange(6), labels], rtol=1e-12)


def test_sparse_labels_out_of_range_fail_at_run_time_with_the_value():
    labels = hk.placeholder(hk.int32, [None])
    loss = hk.nn.sparse_softmax_cross_entropy_with_logits(labels, hk.constant(np.zeros((2, 3), np.float32)))
    with pytest.raises(hk.OpError, match=r"label value of 3 .*\[0, 3\)"):
        run(loss, {labels: [0, 3]})


def test_softmax_and_sigmoid_cross_entropy_with_logits():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((5, 3)) * 30
    probs = rng.dirichlet(np.ones(3), size=5)
    got = run(hk.nn.softmax_cross_entropy_with_logits(probs, hk.constant(logits, hk.float64)))
    np.testing.assert_allclose(got, -(probs * _log_softmax(logits)).sum(-1), rtol=1e-12)
    z = rng.uniform(size=(5, 3))
    got = run(hk.nn.sigmoid_cross_entropy_with_logits(z, hk.constant(logits, hk.float64)))
    want = np.maximum(logits, 0) - logits * z + np.log1p(np.exp(-np.abs(logits)))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    big = run(hk.nn.sigmoid_cross_entropy_with_logits([1.0, 0.0], hk.constant([-800.0, -800.0])))
    np.testing.assert_allclose(big, [800.0, 0.0])  # no overflow where log(sigmoid) would give inf


def test_cross_entropy_shape_errors_name_both_shapes():
    logits = hk.placeholder(hk.float32, [None, 5], name="logits")
    with pytest.raises(hk.GraphError) as e:
        hk.nn.sparse_softmax_cross_entropy_with_logits(hk.placeholder(hk.int32, [None, 5]), logits)
    assert "[None, 5]" in str(e.value) and "logits" in str(e.value)
    with pytest.raises(hk.GraphError, match=r"\[None, 4\].*\[None, 5\]"):
        hk.nn.softmax_cross_entropy_with_logits(hk.placeholder(hk.float32, [None, 4]), logits)
    with pytest.raises(hk.GraphError, match="int32 or int64"):
        hk.nn.sparse_softmax_cross_entropy_with_logits(hk.placeholder(hk.float32, [None]), logits)


def test_nn_namespace_lists_the_public_functions():
    for name in ("relu", "relu6", "leaky_relu", "gelu", "sigmoid", "tanh", "softplus", "softmax", "log_softmax",
                 "dropout", "conv2d", "conv2d_transpose", "max_pool2d", "avg_pool2d", "bias_add",
                 "embedding_lookup", "moments", "batch_normalization", "layer_norm", "l2_normalize",
                 "sparse_softmax_cross_entropy_with_logits", "softmax_cross_entropy_with_logits",
                 "sigmoid_cross_entropy_with_logits"):
        assert name in hk.nn.__all__ and callable(getattr(hk.nn, name))
