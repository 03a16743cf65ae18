"""Issue 9, defect 5: modules, variable scopes and name scopes share one namespace per graph, as in TF."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk

GLOBALS = hk.GraphKeys.GLOBAL_VARIABLES


@pytest.fixture(scope="module")
def spec() -> hk.ModuleSpec:
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 2], name="x")
        hk.add_signature(inputs=x, outputs=hk.matmul(x, hk.get_variable("w", [2, 1])))

    return hk.create_module_spec(module_fn)


def test_two_modules_named_a_name_their_variables_a_and_a_1(graph, spec):
    x = hk.placeholder(hk.float32, [None, 2])
    first, second = hk.Module(spec, name="a", trainable=True), hk.Module(spec, name="a", trainable=True)
    y1, y2 = first(x), second(x)
    assert [v.name for v in graph.get_collection(GLOBALS)] == ["a/w", "a_1/w"]
    assert y1.name.startswith("a/") and y2.name.startswith("a_1/")
    assert sorted(graph.variables) == ["a/w", "a_1/w"]
    assert graph.variables["a_1/w"] is second.variable_map["w"]
    out = hk.Session(graph).run([y1, y2], {x: np.ones((1, 2), np.float32)})
    np.testing.assert_allclose(out[0], np.ones((1, 2)) @ first.variable_map["w"].value)
    np.testing.assert_allclose(out[1], np.ones((1, 2)) @ second.variable_map["w"].value)


def test_a_default_named_variable_scope_after_module_a_is_a_1(graph, spec):
    hk.Module(spec, name="a", trainable=True)(hk.placeholder(hk.float32, [None, 2]))
    with hk.variable_scope(None, default_name="a") as scope:
        w = hk.get_variable("w", [1])
    assert scope.name == "a_1" and w.name == "a_1/w"
    assert [v.name for v in graph.get_collection(GLOBALS)] == ["a/w", "a_1/w"]


def test_a_module_after_a_name_scope_a_is_a_1(graph, spec):
    with hk.name_scope("a"):
        hk.constant(1.0)
    m = hk.Module(spec, name="a", trainable=True)
    m(hk.placeholder(hk.float32, [None, 2]))
    assert [v.name for v in graph.get_collection(GLOBALS)] == ["a_1/w"]
    assert list(graph.variables) == ["a_1/w"]
    with hk.variable_scope(None, default_name="a") as scope:  # no variable scope "a" exists yet, as in TF
        hk.get_variable("w", [1])
    assert scope.name == "a"
    assert [v.name for v in graph.get_collection(GLOBALS)] == ["a_1/w", "a/w"]


def test_a_module_keeps_its_scope_across_calls(graph, spec):
    m = hk.Module(spec, name="a", trainable=True)
    x = hk.placeholder(hk.float32, [None, 2])
    m(x)
    m(x)
    assert [v.name for v in graph.get_collection(GLOBALS)] == ["a/w"]
    assert list(graph.variables) == ["a/w"]
