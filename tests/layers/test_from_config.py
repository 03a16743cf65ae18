"""from_config: Keras's custom-layer config pattern works, and malformed configs are GraphErrors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hubkit as hk
from hubkit import layers as L


class ScaleKw(L.Layer):
    """Keras's pattern: extra arguments, the base ones (name, trainable, dtype) through **kwargs."""

    def __init__(self, k=2.0, **kwargs):
        super().__init__(**kwargs)
        self.k = k

    def call(self, x):
        return x * self.k

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class ScaleNamed(L.Layer):
    """A constructor taking only ``name``: trainable and dtype from the base config are set afterwards."""

    def __init__(self, k=2.0, name=None):
        super().__init__(name=name)
        self.k = k

    def call(self, x):
        return x * self.k

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def test_layer_init_takes_the_base_keyword_arguments():
    layer = ScaleKw(3.0, name="s", trainable=False, dtype="float64")
    assert (layer.name, layer.trainable, layer.dtype.name) == ("s", False, "float64")


@pytest.mark.parametrize("cls", [ScaleKw, ScaleNamed])
def test_custom_layers_following_the_get_config_pattern_round_trip_through_a_model(graph, cls):
    x = hk.Input((4,))
    scale = cls(3.0)
    model = hk.Model(x, L.Dense(2)(scale(x)))
    scale.trainable = False
    config = json.loads(json.dumps(model.get_config()))
    rebuilt = hk.Model.from_config(config, custom_objects={cls.__name__: cls})
    copy = rebuilt.get_layer(scale.name)
    assert type(copy) is cls and copy.k == 3.0 and copy.trainable is False
    assert rebuilt.predict(np.ones((1, 4), np.float32)).shape == (1, 2)


def test_layer_from_config_names_the_class_and_the_refused_keys():
    with pytest.raises(hk.GraphError, match=r"'Dense'.*refuses the keys \['bogus', 'zeta'\]"):
        L.Dense.from_config({"units": 2, "zeta": 1, "bogus": 1})
    with pytest.raises(hk.GraphError, match=r"'ScaleNamed'.*takes no arguments \['bogus'\]; it takes \['k', 'name'\]"):
        ScaleNamed.from_config({"k": 1.0, "bogus": 1, "trainable": True})
    with pytest.raises(hk.GraphError, match=r"Cannot build layer class 'Dense' from config keys \[\].*units"):
        L.Dense.from_config({})
    with pytest.raises(hk.GraphError, match="needs a dict, got list"):
        L.Dense.from_config([2])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, r"lacks the keys \['calls', 'inputs', 'layers', 'outputs'\]"),
        ({"layers": 5}, r"lacks the keys \['calls', 'inputs', 'outputs'\]"),
        ({"layers": 5, "calls": [], "inputs": [], "outputs": []}, "'layers' must be a list of dicts"),
        ({"layers": [{"config": {}}], "calls": [], "inputs": [], "outputs": []}, "layer 0 must be"),
        ({"layers": [], "calls": [{"layer": 1}], "inputs": [], "outputs": []}, "call 0 must be"),
        ([1, 2], "needs a dict from Model.get_config"),
    ],
)
def test_model_from_config_refuses_malformed_configs(graph, config, message):
    with pytest.raises(hk.GraphError, match=message):
        hk.Model.from_config(config)


def test_custom_objects_must_hold_layer_classes(graph):
    x = hk.Input((4,))
    config = hk.Model(x, ScaleKw()(x)).get_config()
    with pytest.raises(hk.GraphError, match=r"custom_objects\['ScaleKw'\] must be a Layer subclass"):
        hk.Model.from_config(config, custom_objects={"ScaleKw": len})
