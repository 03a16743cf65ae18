"""HubLayer on a signature with several outputs: output_key picks one, and its absence is explained."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


def two_outputs_fn():
    x = hk.placeholder(hk.float32, [None, 3], name="x")
    hk.add_signature(inputs=x, outputs=x * 2.0)
    hk.add_signature("two", inputs=x, outputs={"b_double": x * 2.0, "a_half": x * 0.5})


def test_a_multi_output_signature_without_output_key_names_output_key_and_the_outputs(graph):
    spec = hk.create_module_spec(two_outputs_fn)
    with pytest.raises(hk.SignatureError, match=r"no 'default' output; pick one with output_key= among \['a_half', 'b_double'\]"):
        hk.HubLayer(spec, signature="two")(hk.Input((3,)))


def test_output_key_picks_the_output(graph):
    spec = hk.create_module_spec(two_outputs_fn)
    x = hk.Input((3,))
    model = hk.Model(x, hk.HubLayer(spec, signature="two", output_key="a_half")(x))
    np.testing.assert_allclose(model.predict(np.ones((2, 3), np.float32)), np.full((2, 3), 0.5))
    with pytest.raises(hk.SignatureError, match=r"no output 'zz'; expected one of \['a_half', 'b_double'\]"):
        hk.HubLayer(spec, signature="two", output_key="zz")(hk.Input((3,)))
