"""Issue 9, defect 7: an eager ``HubLayer`` call takes a Python list of strings, as ``Module`` does."""

from __future__ import annotations

import numpy as np

import hubkit as hk


def _text_spec() -> hk.ModuleSpec:
    def module_fn():
        sentences = hk.placeholder(hk.string, [None], name="sentences")
        hk.add_signature(inputs=sentences, outputs=hk.text.lower(sentences))

    return hk.create_module_spec(module_fn)


def test_eager_hub_layer_call_with_a_list_of_strings_matches_module():
    spec = _text_spec()
    words = ["Hello", "WORLD", "ß"]
    expected = hk.Module(spec)(words)
    got = hk.HubLayer(spec)(words)
    assert got.tolist() == expected.tolist() == ["hello", "world", "ß"]
    assert hk.HubLayer(spec)(("A", "b")).tolist() == ["a", "b"]  # a tuple too
    assert hk.HubLayer(spec)(np.array(["Q"])).tolist() == ["q"]  # and a NumPy string array
