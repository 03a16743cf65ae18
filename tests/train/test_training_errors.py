"""Bad input to Model building, compile, fit, evaluate and the optimizers: each refusal names what was wrong."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit import layers as L
from hubkit.train.lookups import get_metric

X = np.zeros((4, 3), np.float32)
Y = np.zeros((4, 1), np.float32)


def one_output(compiled=True):
    x = hk.Input((3,), name="x")
    model = hk.Model(x, L.Dense(1, name="out")(x), name="m")
    if compiled:
        model.compile(hk.train.GradientDescent(0.1), "mse")
    return model


def two_inputs():
    a, b = hk.Input((3,), name="a"), hk.Input((3,), name="b")
    model = hk.Model([a, b], L.Dense(1, name="out")(L.Add()([a, b])), name="m2")
    model.compile(hk.train.GradientDescent(0.1), "mse")
    return model


def frozen():
    model = one_output(compiled=False)
    model.trainable = False
    model.compile(hk.train.GradientDescent(0.1), "mse")
    return model


def two_outputs():
    x = hk.Input((3,), name="x")
    return hk.Model(x, [L.Dense(1, name="p")(x), L.Dense(1, name="q")(x)])


FIT_ERRORS = [
    ("split", lambda: one_output().fit(X, Y, validation_split=1.5, verbose=0), r"validation_split must be in \(0, 1\), got 1\.5"),
    ("val_pair", lambda: one_output().fit(X, Y, validation_data=(X,), verbose=0), r"validation_data must be a pair"),
    ("empty", lambda: one_output().fit(X[:0], Y[:0], verbose=0), r"at least one training example"),
    ("none_x", lambda: one_output().fit(None, Y, verbose=0), r"inputs 'x': got None instead of an array"),
    ("list_count", lambda: two_inputs().fit([X], Y, verbose=0), r"has 2 inputs \['a', 'b'\]; got 1 arrays"),
    ("one_of_two", lambda: two_inputs().fit(X, Y, verbose=0), r"has 2 inputs \['a', 'b'\]; pass a list or a dict"),
    ("rows", lambda: two_inputs().fit([X, X[:2]], Y, verbose=0), r"different numbers of examples: \[2, 4\]"),
]


@pytest.mark.parametrize(("case", "call", "message"), FIT_ERRORS, ids=[c[0] for c in FIT_ERRORS])
def test_fit_refuses_bad_data(graph, case, call, message):
    with pytest.raises(hk.FeedError, match=message):
        call()


def test_fit_refuses_a_model_with_nothing_to_train(graph):
    with pytest.raises(hk.GraphError, match=r"Model 'm' has no trainable variables"):
        frozen().fit(X, Y, verbose=0)


COMPILE_ERRORS = [
    ("not_optimizer", lambda m: m.compile(object(), "mse"), r"is not an optimizer: it has no minimize"),
    ("metric", lambda m: m.compile("sgd", "mse", metrics=["precision"]), r"Unknown metric 'precision'.*'accuracy'"),
    ("loss_list", lambda m: m.compile("sgd", ["mse"]), r"loss has 1 entries for 2 outputs"),
]


@pytest.mark.parametrize(("case", "call", "message"), COMPILE_ERRORS, ids=[c[0] for c in COMPILE_ERRORS])
def test_compile_refuses_bad_arguments(graph, case, call, message):
    with pytest.raises(hk.GraphError, match=message):
        call(two_outputs())


def test_get_metric_accepts_acc_as_accuracy():
    assert get_metric("acc")[0] == "accuracy"


MODEL_ERRORS = [
    ("no_shape", lambda: hk.train.functional.InputLayer(), r"Input needs a shape"),
    ("not_tensor", lambda: hk.Model(3, 4), r"must be tensors, or lists or dicts of tensors"),
    ("same_input", lambda: (lambda x: hk.Model([x, x], L.Dense(1)(x)))(hk.Input((3,))), r"lists the same input twice"),
    ("no_outputs", lambda: hk.Model(hk.Input((3,)), []), r"A model needs at least one output"),
    ("not_placeholder", lambda: hk.Model(hk.constant(np.zeros((1, 3), np.float32)), hk.Input((3,))),
     r"is not a placeholder; create inputs with hubkit.Input"),
    ("layer_output", lambda: (lambda x: hk.Model(L.Dense(2, name="d")(x), x))(hk.Input((3,))),
     r"is the output of layer 'd'; model inputs must come from hubkit.Input"),
    ("missing_input", lambda: (lambda a, b: hk.Model(a, L.Add()([a, b])))(hk.Input((3,), name="a"), hk.Input((3,), name="b")),
     r"depend on input 'b:0', which is not among its inputs \['a:0'\]"),
]


@pytest.mark.parametrize(("case", "call", "message"), MODEL_ERRORS, ids=[c[0] for c in MODEL_ERRORS])
def test_model_refuses_bad_inputs_and_outputs(graph, case, call, message):
    with pytest.raises(hk.GraphError, match=message):
        call()


def test_model_call_and_get_layer_name_what_they_know(graph):
    model = two_inputs()
    with pytest.raises(hk.GraphError, match=r"has no layer 'nope'; it has \[.*'out'"):
        model.get_layer("nope")
    with pytest.raises(hk.GraphError, match=r"takes inputs \['a', 'b'\]; missing \['b'\], unexpected \['c'\]"):
        model({"a": X, "c": X})
    with pytest.raises(hk.GraphError, match=r"takes 2 inputs \['a', 'b'\], got 1"):
        model([X])


def test_model_from_config_refuses_unknown_references(graph):
    config = one_output(compiled=False).get_config()
    bad_layer = {**config, "calls": [{**config["calls"][0], "layer": "ghost"}]}
    with pytest.raises(hk.GraphError, match=r"calls unknown layer 'ghost'; layers are \["):
        hk.Model.from_config(bad_layer)
    with pytest.raises(hk.GraphError, match=r"refers to an unknown output \['ghost', 0, 0\]"):
        hk.Model.from_config({**config, "outputs": ["ghost", 0, 0]})
    with pytest.raises(hk.GraphError, match=r"malformed tensor reference 'out'"):
        hk.Model.from_config({**config, "outputs": ["out", "0", 0]})


OPTIMIZER_ERRORS = [
    ("rate_text", lambda: hk.train.GradientDescent("fast"), r"must be a number or a scalar tensor, got 'fast'"),
    ("rate_negative", lambda: hk.train.GradientDescent(-0.1), r"must be a non-negative number, got -0\.1"),
    ("adagrad_init", lambda: hk.train.Adagrad(0.1, initial_accumulator_value=0.0), r"initial_accumulator_value must be positive"),
]


@pytest.mark.parametrize(("case", "call", "message"), OPTIMIZER_ERRORS, ids=[c[0] for c in OPTIMIZER_ERRORS])
def test_optimizers_refuse_bad_settings(case, call, message):
    with pytest.raises(hk.GraphError, match=message):
        call()


def test_minimize_refuses_a_var_list_entry_that_is_not_a_variable(graph):
    v = hk.Variable(np.float32(1.0), name="v")
    with pytest.raises(hk.GraphError, match=r"Optimizers update hubkit.Variable objects; 3 is not one"):
        hk.train.GradientDescent(0.1).minimize(v * 2.0, var_list=[v, 3])
