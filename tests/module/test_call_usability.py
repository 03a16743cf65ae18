"""Calls a new user gets wrong: batch sizes that disagree, and a bare string where a batch is expected."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


def _module_fn():
    a = hk.placeholder(hk.float32, [None, 3], name="a")
    b = hk.placeholder(hk.float32, [None, 3], name="b")
    scale = hk.placeholder(hk.float32, [], name="scale")
    hk.add_signature(inputs={"a": a, "b": b, "scale": scale}, outputs=(a + b) * scale)
    sentences = hk.placeholder(hk.string, [None], name="sentences")
    hk.add_signature("embed", inputs=sentences, outputs=hk.strings_length(sentences)
                     if hasattr(hk, "strings_length") else hk.zeros_like(hk.cast(hk.shape(sentences), hk.float32)))
    fixed = hk.placeholder(hk.float32, [2, 3], name="fixed")
    free = hk.placeholder(hk.float32, [None, 3], name="free")
    hk.add_signature("mixed", inputs={"fixed": fixed, "free": free}, outputs={"default": fixed, "free": free})


@pytest.fixture(scope="module")
def module():
    return hk.Module(hk.create_module_spec(_module_fn))


@pytest.mark.parametrize("rows", [(2, 5), (1, 0), (3, 2)])
def test_batch_sizes_that_disagree_are_refused_before_running(module, rows):
    inputs = {"a": np.ones((rows[0], 3), np.float32), "b": np.ones((rows[1], 3), np.float32), "scale": 2.0}
    with pytest.raises(hk.SignatureError) as info:
        module(inputs)
    message = str(info.value)
    assert message.startswith("Signature 'default' was called with inputs whose batch sizes")
    assert f"'a' has shape [{rows[0]}, 3], 'b' has shape [{rows[1]}, 3]" in message
    assert "scale" not in message  # a scalar input has no batch


def test_matching_batches_and_declared_dimensions_still_run(module):
    out = module({"a": np.ones((4, 3)), "b": np.ones((4, 3)), "scale": 0.5})
    np.testing.assert_array_equal(out, np.ones((4, 3), np.float32))
    # a declared (not free) first dimension is not a batch: it need not match the others
    out = module({"fixed": np.ones((2, 3)), "free": np.ones((7, 3))}, signature="mixed", as_dict=True)
    assert out["free"].shape == (7, 3)


@pytest.mark.parametrize("value", ["one sentence", b"bytes too", ""])
def test_a_bare_string_says_to_pass_a_list(module, value):
    with pytest.raises(hk.SignatureError, match=r"takes a batch of strings \(shape \[None\]\), but was given a bare "
                                                r"string; pass a list, e\.g\. \["):
        module(value, signature="embed")
    assert module([value], signature="embed").shape[0] == 1


def test_one_example_without_a_batch_dimension_says_to_add_one(module):
    with pytest.raises(hk.SignatureError, match=r"has shape \[None, 3\]; the value given has shape \[3\]\. It takes a "
                                                r"batch: pass \[x\] \(or x\[np\.newaxis\]\) for one example\."):
        module({"a": np.ones(3), "b": np.ones((1, 3)), "scale": 1.0})
    with pytest.raises(hk.SignatureError) as info:
        module({"a": np.ones((1, 4)), "b": np.ones((1, 3)), "scale": 1.0})
    assert "It takes a batch" not in str(info.value)  # a wrong width is not a missing batch dimension
