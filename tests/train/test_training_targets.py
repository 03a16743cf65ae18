"""fit/evaluate adapt targets to each output as Keras does, and refuse what they cannot adapt."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit import layers as L
from hubkit.train.lookups import get_loss


def regression_model(loss="mse", metrics=None):
    x = hk.Input((4,), name="feat")
    model = hk.Model(x, L.Dense(1, name="out")(x))
    model.compile(hk.train.GradientDescent(0.0), loss, metrics=metrics)
    return model


def classifier(loss="sparse_softmax_cross_entropy"):
    x = hk.Input((4,), name="feat")
    model = hk.Model(x, L.Dense(3, name="cls")(x))
    model.compile(hk.train.GradientDescent(0.0), loss)
    return model


@pytest.mark.parametrize("loss", ["mse", "mae"])
def test_one_dimensional_regression_targets_are_expanded_not_broadcast(graph, rng, loss):
    model = regression_model(loss, metrics=["mse", "mae"])
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.normal(size=8).astype(np.float32)
    p = model.predict(x)[:, 0]
    got = model.evaluate(x, y, batch_size=8)
    # NumPy reference on the (8,) vs (8,) difference, never the (8, 8) broadcast.
    np.testing.assert_allclose(got["mse"], np.mean((p - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(got["mae"], np.mean(np.abs(p - y)), rtol=1e-5)
    assert got == model.evaluate(x, y[:, None], batch_size=8)
    assert got == model.evaluate(x, y[:, None, None], batch_size=8)  # a trailing 1 is dropped too


def test_integer_regression_targets_are_cast_to_the_output_dtype(graph, rng):
    model = regression_model()
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.integers(-3, 3, size=8)
    p = model.predict(x)[:, 0]
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=8)["loss"], np.mean((p - y) ** 2), rtol=1e-5)
    assert len(model.fit(x, y, epochs=1, verbose=0)["loss"]) == 1


def test_a_target_shape_that_does_not_fit_the_output_is_refused(graph, rng):
    model = regression_model()
    x = rng.normal(size=(8, 4)).astype(np.float32)
    with pytest.raises(hk.FeedError, match=r"output 'out' has shape \[None, 1\]; the targets for it have shape \[8, 3\]"):
        model.fit(x, rng.normal(size=(8, 3)), verbose=0)
    with pytest.raises(hk.FeedError, match="targets must be numbers"):
        model.evaluate(x, np.array(["a"] * 8))


def test_one_hot_targets_for_a_sparse_loss_are_refused(graph, rng):
    model = classifier()
    x = rng.normal(size=(8, 4)).astype(np.float32)
    with pytest.raises(hk.FeedError, match=r"output 'cls' has shape \[None, 3\].*\[8, 3\].*without its last axis"):
        model.fit(x, np.eye(3)[rng.integers(0, 3, 8)], verbose=0)


@pytest.mark.parametrize("loss", ["sparse_softmax_cross_entropy", "sparse_categorical_crossentropy"])
def test_sparse_labels_must_be_integral_and_in_range(graph, rng, loss):
    model = classifier(loss)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 8).astype(np.float32)
    model.evaluate(x, labels)  # integral floats are fine
    model.evaluate(x, labels[:, None].astype(np.int32))  # so is a trailing axis of size 1
    with pytest.raises(hk.FeedError, match=r"integer class ids; got 2\.7"):
        model.evaluate(x, np.where(np.arange(8) == 3, 2.7, labels))
    with pytest.raises(hk.FeedError, match="integer class ids; got nan"):
        model.fit(x, np.where(np.arange(8) == 0, np.nan, labels), verbose=0)
    with pytest.raises(hk.FeedError, match=r"class ids must be in \[0, 3\); got ids from 0 to 5"):
        model.fit(x, np.where(np.arange(8) == 0, 5, labels), verbose=0)


def test_sparse_loss_matches_numpy(graph, rng):
    model = classifier()
    x = rng.normal(size=(8, 4)).astype(np.float64)
    labels = rng.integers(0, 3, 8)
    logits = model.predict(x).astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(model.evaluate(x, labels, batch_size=8)["loss"], -logp[np.arange(8), labels].mean(), rtol=1e-5)


@pytest.mark.parametrize("shape", [None, [None, None]])
def test_sparse_probability_loss_needs_a_known_number_of_classes(graph, shape):
    # An unknown class count once reached one_hot as None (a TypeError) instead of this GraphError.
    loss = get_loss("sparse_categorical_crossentropy")
    probs = hk.placeholder(hk.float32, shape, name="probs")
    with pytest.raises(hk.GraphError, match=r"known number of classes.*'probs:0'"):
        loss(hk.placeholder(hk.int64, [None]), probs)


# -- bad arguments to fit / evaluate / predict / compile ------------------------------------------------
def test_inputs_and_targets_must_have_as_many_examples(graph, rng):
    model = classifier()
    x, y = rng.normal(size=(50, 4)).astype(np.float32), rng.integers(0, 3, 50)
    with pytest.raises(hk.FeedError, match="fit\\(\\): the inputs have 50 examples but the targets have 40"):
        model.fit(x, y[:40], verbose=0, shuffle=False)
    with pytest.raises(hk.FeedError, match="evaluate\\(\\): the inputs have 10 examples but the targets have 50"):
        model.evaluate(x[:10], y)
    with pytest.raises(hk.FeedError, match="inputs have 50 examples but the targets have 5"):
        model.fit(x, y, validation_data=(x, y[:5]), verbose=0)


def test_fit_and_evaluate_need_targets(graph, rng):
    model = classifier()
    x = rng.normal(size=(8, 4)).astype(np.float32)
    with pytest.raises(hk.FeedError, match=r"fit\(\) needs targets y for the model's outputs \['cls'\]"):
        model.fit(x, None, verbose=0)
    with pytest.raises(hk.FeedError, match=r"evaluate\(\) needs targets y"):
        model.evaluate(x, None)
    with pytest.raises(hk.FeedError, match="one row per example, got the scalar 3"):
        model.evaluate(x, 3)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "32", True])
def test_batch_size_and_epochs_must_be_positive_integers(graph, rng, bad):
    model = classifier()
    x, y = rng.normal(size=(8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    with pytest.raises(hk.FeedError, match="batch_size must be a positive integer"):
        model.predict(x, batch_size=bad)
    with pytest.raises(hk.FeedError, match="batch_size must be a positive integer"):
        model.evaluate(x, y, batch_size=bad)
    with pytest.raises(hk.FeedError, match="batch_size must be a positive integer"):
        model.fit(x, y, batch_size=bad, verbose=0)
    with pytest.raises(hk.FeedError, match="epochs must be a positive integer"):
        model.fit(x, y, epochs=bad, verbose=0)


def test_compile_refuses_missing_losses_and_unknown_names_listing_the_choices(graph):
    x = hk.Input((4,))
    model = hk.Model(x, L.Dense(1, name="out")(x))
    with pytest.raises(hk.GraphError, match=r"needs a loss for at least one output of \['out'\].*'binary_crossentropy'"):
        model.compile("adam")
    with pytest.raises(hk.GraphError, match=r"Unknown optimizer 'adamx'; .*\['adagrad', 'adam', 'momentum'"):
        model.compile("adamx", "mse")
    with pytest.raises(hk.GraphError, match=r"Unknown loss 'nope'; .*\['binary_crossentropy'"):
        model.compile("adam", "nope")
    model.compile("adam", "mse", metrics="mae")  # one metric name, not its letters
    assert model.evaluate(np.ones((2, 4), np.float32), np.ones(2)).keys() == {"loss", "mae"}
