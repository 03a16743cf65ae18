"""String signature inputs called eagerly: str, bytes (decoded as UTF-8), NumPy unicode; anything else refused."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


@pytest.fixture(scope="module")
def echo():
    def module_fn():
        s = hk.placeholder(hk.string, [None], name="sentences")
        hk.add_signature("default", {"sentences": s}, {"default": hk.text.lower(s)})

    return hk.Module(hk.create_module_spec(module_fn))


@pytest.mark.parametrize("value", [["Ab", "ÉT"], [b"Ab", "\u00c9T".encode()], ("Ab", b"\xc3\x89T"), np.array(["Ab", "ÉT"])])
def test_strings_bytes_and_numpy_unicode_are_accepted(echo, value):
    assert echo(value).tolist() == ["ab", "ét"]


@pytest.mark.parametrize(("value", "message"), [(["a", 3], "got the int 3"), (["a", None], "got the NoneType None")])
def test_other_elements_are_refused_with_the_first_one_named(echo, value, message):
    with pytest.raises(hk.SignatureError, match=f"input 'sentences' expects strings, {message}"):
        echo(value)
