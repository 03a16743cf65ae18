"""hubkit.losses against hand-written formulas, TF1 weighting and the loss collections."""

import numpy as np
import pytest

import hubkit as hk
from tests.helpers_fd import check_vjp

RNG = np.random.default_rng(0)
Y = RNG.standard_normal((6, 3))
P = RNG.standard_normal((6, 3))
LOGITS = RNG.standard_normal((6, 4)) * 3
SPARSE = np.array([0, 3, 1, 2, 2, 0])
ONEHOT = np.eye(4)[SPARSE]
BINARY = (RNG.uniform(size=(6, 4)) > 0.5).astype(np.float64)


@pytest.fixture(autouse=True)
def fresh_graph():
    g = hk.Graph()
    with g.as_default():
        yield g


def run(fetches, feeds=None):
    return hk.Session(hk.get_default_graph()).run(fetches, feeds or {})


def f64(x):
    return hk.constant(x, hk.float64)


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def huber(e, d):
    a = np.abs(e)
    return np.where(a <= d, 0.5 * a**2, d * a - 0.5 * d**2)


CASES = {
    "mean_squared_error": (lambda w: hk.losses.mean_squared_error(Y, f64(P), weights=w), (P - Y) ** 2),
    "absolute_difference": (lambda w: hk.losses.absolute_difference(Y, f64(P), weights=w), np.abs(P - Y)),
    "huber_loss": (lambda w: hk.losses.huber_loss(Y, f64(P), weights=w, delta=0.7), huber(P - Y, 0.7)),
    "sparse_softmax_cross_entropy": (
        lambda w: hk.losses.sparse_softmax_cross_entropy(SPARSE, f64(LOGITS), weights=w),
        -log_softmax(LOGITS)[np.arange(6), SPARSE],
    ),
    "softmax_cross_entropy": (
        lambda w: hk.losses.softmax_cross_entropy(ONEHOT, f64(LOGITS), weights=w),
        -(ONEHOT * log_softmax(LOGITS)).sum(-1),
    ),
    "sigmoid_cross_entropy": (
        lambda w: hk.losses.sigmoid_cross_entropy(BINARY, f64(LOGITS), weights=w),
        np.maximum(LOGITS, 0) - LOGITS * BINARY + np.log1p(np.exp(-np.abs(LOGITS))),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_is_the_mean_of_the_formula(name):
    build, per_element = CASES[name]
    loss = build(1.0)
    assert loss.shape == ()
    np.testing.assert_allclose(run(loss), per_element.mean(), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_scalar_weights_scale_the_mean(name):
    build, per_element = CASES[name]
    np.testing.assert_allclose(run(build(2.5)), 2.5 * per_element.mean(), rtol=1e-12)
    assert run(build(0.0)) == 0.0


def test_per_example_weights_average_over_the_non_zero_ones():
    w = np.array([[1.0], [0.0], [2.0], [0.0], [1.0], [1.0]])
    loss = hk.losses.mean_squared_error(Y, f64(P), weights=w)
    err = (P - Y) ** 2
    np.testing.assert_allclose(run(loss), (err * w).sum() / (4 * 3), rtol=1e-12)  # TF1 SUM_BY_NONZERO_WEIGHTS
    all_zero = hk.losses.mean_squared_error(Y, f64(P), weights=np.zeros((6, 1)))
    assert run(all_zero) == 0.0
    xent = hk.losses.sparse_softmax_cross_entropy(SPARSE, f64(LOGITS), weights=w[:, 0])
    per = -log_softmax(LOGITS)[np.arange(6), SPARSE]
    np.testing.assert_allclose(run(xent), (per * w[:, 0]).sum() / 4, rtol=1e-12)


def test_reductions():
    err = (P - Y) ** 2
    R = hk.losses.Reduction
    got = run([
        hk.losses.mean_squared_error(Y, f64(P), weights=2.0, reduction=R.SUM),
        hk.losses.mean_squared_error(Y, f64(P), reduction=R.NONE),
        hk.losses.mean_squared_error(Y, f64(P), weights=np.full((6, 1), 3.0), reduction=R.MEAN),
    ])
    np.testing.assert_allclose(got[0], 2 * err.sum())
    np.testing.assert_allclose(got[1], err)
    np.testing.assert_allclose(got[2], err.mean())
    with pytest.raises(hk.GraphError, match="expected one of"):
        hk.losses.mean_squared_error(Y, f64(P), reduction="average")


def test_label_smoothing():
    s = 0.2
    smooth = ONEHOT * (1 - s) + s / 4
    got = run(hk.losses.softmax_cross_entropy(ONEHOT, f64(LOGITS), label_smoothing=s))
    np.testing.assert_allclose(got, -(smooth * log_softmax(LOGITS)).sum(-1).mean(), rtol=1e-12)
    sb = BINARY * (1 - s) + 0.5 * s
    got = run(hk.losses.sigmoid_cross_entropy(BINARY, f64(LOGITS), label_smoothing=s))
    want = np.maximum(LOGITS, 0) - LOGITS * sb + np.log1p(np.exp(-np.abs(LOGITS)))
    np.testing.assert_allclose(got, want.mean(), rtol=1e-12)


def test_labels_are_cast_to_the_predictions_dtype():
    labels = hk.placeholder(hk.int32, [None, 3])
    preds = hk.placeholder(hk.float32, [None, 3])
    loss = hk.losses.mean_squared_error(labels, preds)
    assert loss.dtype is hk.float32
    got = run(loss, {labels: [[1, 2, 3]], preds: [[1.0, 2.0, 5.0]]})
    np.testing.assert_allclose(got, 4 / 3, rtol=1e-6)


def test_shape_mismatches_name_both_shapes():
    preds = hk.placeholder(hk.float32, [None, 3], name="preds")
    with pytest.raises(hk.GraphError) as e:
        hk.losses.mean_squared_error(hk.placeholder(hk.float32, [None, 4], name="targets"), preds)
    msg = str(e.value)
    assert "[None, 4]" in msg and "[None, 3]" in msg and "'targets:0'" in msg and "'preds:0'" in msg
    with pytest.raises(hk.GraphError, match=r"\[None, 2\].*\[None, 3\]"):
        hk.losses.softmax_cross_entropy(hk.placeholder(hk.float32, [None, 2]), preds)
    with pytest.raises(hk.GraphError, match=r"\[None, 3\].*without its last dimension"):
        hk.losses.sparse_softmax_cross_entropy(hk.placeholder(hk.int32, [None, 3]), preds)
    with pytest.raises(hk.GraphError, match="do not broadcast"):
        hk.losses.mean_squared_error(np.zeros((2, 3)), preds, weights=np.ones(5))


def test_losses_are_collected_and_totalled_with_regularization(fresh_graph):
    a = hk.losses.mean_squared_error(Y, f64(P))
    b = hk.losses.absolute_difference(Y, f64(P), loss_collection=None)
    assert hk.losses.get_losses() == [a] and b not in hk.losses.get_losses()
    assert run(hk.losses.get_regularization_loss()) == 0.0
    reg = f64(0.25)
    fresh_graph.add_to_collection(hk.GraphKeys.REGULARIZATION_LOSSES, reg)
    total = hk.losses.get_total_loss()
    np.testing.assert_allclose(run(total), ((P - Y) ** 2).mean() + 0.25)
    np.testing.assert_allclose(run(hk.losses.get_total_loss(add_regularization_losses=False)), ((P - Y) ** 2).mean())
    np.testing.assert_allclose(run(hk.losses.get_regularization_loss()), 0.25)


def test_total_loss_without_losses_is_an_error():
    with pytest.raises(hk.GraphError, match="no losses"):
        hk.losses.get_total_loss()


def test_loss_nodes_live_under_the_loss_scope():
    loss = hk.losses.mean_squared_error(Y, f64(P))
    assert loss.name.startswith("mean_squared_error/")


@pytest.mark.parametrize("name", ["huber", "xent", "sigmoid", "mse_weighted"])
def test_loss_gradients_match_finite_differences(name):
    fns = {
        "huber": lambda p: hk.losses.huber_loss(Y, p, delta=0.7, loss_collection=None),
        "xent": lambda z: hk.losses.softmax_cross_entropy(ONEHOT, z, label_smoothing=0.1, loss_collection=None),
        "sigmoid": lambda z: hk.losses.sigmoid_cross_entropy(BINARY, z, loss_collection=None),
        "mse_weighted": lambda p, w: hk.losses.mean_squared_error(Y, p, weights=w, loss_collection=None),
    }
    inputs = {"huber": [P], "xent": [LOGITS], "sigmoid": [LOGITS], "mse_weighted": [P, RNG.uniform(0.5, 1, (6, 1))]}
    check_vjp(fns[name], inputs[name])
