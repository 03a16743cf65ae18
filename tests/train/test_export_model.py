"""hk.export_model_as_module: a trained Model (with a HubLayer inside) as a module, in one call, names not doubled."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


def _inner_fn():
    x = hk.placeholder(hk.float32, [None, 4], name="x")
    hk.add_signature(inputs=x, outputs=hk.layers.dense(x, 5, activation="relu", name="hidden"))


@pytest.fixture
def trained(tmp_path):
    hk.Module(hk.create_module_spec(_inner_fn)).export(str(tmp_path / "inner"))
    with hk.Graph().as_default():  # a fresh process's names: no 'hub_layer' from an earlier test in this graph
        return _train(tmp_path)


def _train(tmp_path):
    inputs = hk.Input(shape=(4,), name="features")
    features = hk.HubLayer(str(tmp_path / "inner"), trainable=True, name="hub_layer")(inputs)
    outputs = hk.layers.Dense(3, name="head")(features)
    model = hk.Model(inputs, outputs, name="clf")
    model.compile(optimizer=hk.train.Adam(0.05), loss="sparse_softmax_cross_entropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    before = {v.name: np.array(v.value) for v in model.variables}
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert any(not np.array_equal(before[v.name], v.value) for v in model.variables)  # it did train
    return model, x


def test_export_keeps_the_trained_weights_and_the_models_names(trained, tmp_path):
    model, x = trained
    path = hk.export_model_as_module(model, tmp_path / "clf", signature_name="default")
    m = hk.Module(path)
    assert sorted(m.variable_map) == sorted(v.name for v in model.variables)
    assert sorted(m.variable_map) == ["head/bias", "head/kernel", "hub_layer/hidden/bias", "hub_layer/hidden/kernel"]
    np.testing.assert_allclose(m(x), model.predict(x), rtol=1e-5, atol=1e-6)
    assert m.get_signature_names() == ["default"]
    assert list(m.get_input_info_dict()) == ["features"]


def test_custom_signature_name_and_several_inputs(tmp_path):
    a, b = hk.Input(shape=(2,), name="a"), hk.Input(shape=(3,), name="b")
    joined = hk.layers.Concatenate()([a, b]) if hasattr(hk.layers, "Concatenate") else None
    if joined is None:
        pytest.skip("no Concatenate layer")
    model = hk.Model([a, b], hk.layers.Dense(1, name="out")(joined), name="two")
    m = hk.Module(hk.export_model_as_module(model, tmp_path / "two", signature_name="score"))
    assert m.get_signature_names() == ["score"]
    assert sorted(m.get_input_info_dict("score")) == ["a", "b"]
    xa, xb = np.ones((4, 2), np.float32), np.ones((4, 3), np.float32)
    np.testing.assert_allclose(m({"a": xa, "b": xb}, signature="score"), model.predict([xa, xb]), rtol=1e-5)


def test_not_a_model_is_refused(tmp_path):
    with pytest.raises(hk.SignatureError, match=r"takes a functional hubkit\.Model, got Dense"):
        hk.export_model_as_module(hk.layers.Dense(2), tmp_path / "x")
