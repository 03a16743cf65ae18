"""HubLayer.get_config needs a handle to write down; a layer made from a ModuleSpec object has none."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import hubkit as hk


def module_fn():
    x = hk.placeholder(hk.float32, [None, 3], name="x")
    hk.add_signature(inputs=x, outputs=x * 2.0)


def test_a_layer_made_from_a_spec_object_has_no_config(graph):
    layer = hk.HubLayer(hk.create_module_spec(module_fn), name="doubler")
    with pytest.raises(
        hk.GraphError,
        match=r"HubLayer 'doubler' was made from a ModuleSpec object; get_config needs a handle",
    ):
        layer.get_config()


def test_a_model_holding_such_a_layer_cannot_be_configured_either(graph):
    x = hk.Input((3,))
    model = hk.Model(x, hk.HubLayer(hk.create_module_spec(module_fn), name="doubler")(x))
    np.testing.assert_allclose(model.predict(np.ones((1, 3), np.float32)), [[2.0, 2.0, 2.0]])
    with pytest.raises(hk.GraphError, match=r"HubLayer 'doubler' was made from a ModuleSpec object"):
        model.get_config()


def test_a_layer_made_from_a_path_writes_the_path(graph, tmp_path):
    hk.Module(hk.create_module_spec(module_fn)).export(str(tmp_path / "m"))
    config = hk.HubLayer(pathlib.Path(tmp_path / "m"), name="doubler").get_config()
    assert config["handle"] == str(tmp_path / "m") and config["name"] == "doubler"
