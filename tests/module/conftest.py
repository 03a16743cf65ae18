"""Module functions shared by the module tests (TF Hub's test modules, rebuilt with hubkit)."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


def mlp_module_fn(units: int = 3):
    """Two signatures over shared weights: default (logits) and hidden (two outputs, no default)."""
    x = hk.placeholder(hk.float32, [None, 4], name="x")
    h = hk.layers.dense(x, 5, activation="relu", name="hidden")
    logits = hk.layers.dense(h, units, name="logits")
    hk.add_signature(inputs={"x": x}, outputs=logits)
    hk.add_signature("hidden", inputs=x, outputs={"activations": h, "sum": hk.reduce_sum(h, axis=1)})


def plus_one_module_fn():
    """A variable-free module with a two-input signature."""
    a = hk.placeholder(hk.float32, [None], name="a")
    b = hk.placeholder(hk.float32, [None], name="b")
    hk.add_signature(inputs={"a": a, "b": b}, outputs={"default": a + b + 1.0, "diff": a - b})
    y = hk.placeholder(hk.float32, [None, 2], name="y")
    hk.add_signature("plus_one", inputs=y, outputs=y + 1.0)


def bn_module_fn(training: bool = False):
    """Dense + batch norm + dropout; the {"train"} variant trains batch norm and applies dropout."""
    x = hk.placeholder(hk.float32, [None, 3], name="x")
    h = hk.layers.dense(x, 4, kernel_regularizer=hk.regularizers.l2(0.1), name="dense")
    h = hk.layers.batch_normalization(h, training=training, momentum=0.5, name="bn")
    h = hk.layers.dropout(h, rate=0.5, training=training, seed=1)
    hk.add_signature(inputs=x, outputs=h)


def bn_spec():
    return hk.create_module_spec(bn_module_fn, [(set(), {"training": False}), ({"train"}, {"training": True})])


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def mlp_spec():
    return hk.create_module_spec(mlp_module_fn)


@pytest.fixture
def plus_one_spec():
    return hk.create_module_spec(plus_one_module_fn)


def mlp_reference(m: hk.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hidden, logits) of the MLP module computed with NumPy from its variables."""
    v = {k: var.numpy() for k, var in m.variable_map.items()}
    h = np.maximum(x @ v["hidden/kernel"] + v["hidden/bias"], 0)
    return h, h @ v["logits/kernel"] + v["logits/bias"]


@pytest.fixture
def fns():
    """The module functions and helpers above (conftest is not importable under importlib mode)."""
    import types

    return types.SimpleNamespace(
        mlp_module_fn=mlp_module_fn,
        plus_one_module_fn=plus_one_module_fn,
        bn_module_fn=bn_module_fn,
        bn_spec=bn_spec,
        mlp_reference=mlp_reference,
    )
