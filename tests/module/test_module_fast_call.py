"""``Module.__call__``'s fast path: a repeated one-array call skips packing and checking, with the same results."""

import numpy as np
import pytest

import hubkit as hk


def _mlp_module():
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 3], name="x")
        hk.add_signature(inputs=x, outputs=hk.layers.dense(x, 2, activation="relu"))
        y = hk.placeholder(hk.float32, [None, 3], name="y")
        hk.add_signature("two", inputs={"a": x, "b": y}, outputs=x * y)

    return hk.Module(hk.create_module_spec(module_fn))


def test_repeated_calls_take_the_fast_path_and_agree():
    m = _mlp_module()
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    first = m(x)
    assert m._fast_calls[None].shapes == {(4, 3)}
    np.testing.assert_array_equal(m(x), first)
    np.testing.assert_array_equal(m(x.tolist()), first)  # a list goes the checked way and agrees
    # The fast path reads variables at each call, as the checked one does.
    kernel = m.variable_map["dense/kernel"]
    kernel.assign(np.zeros((3, 2), np.float32))
    np.testing.assert_array_equal(m(x), np.maximum(m.variable_map["dense/bias"].value, 0) + np.zeros((4, 2)))


def test_unseen_shapes_and_dtypes_are_still_checked():
    m = _mlp_module()
    m(np.ones((4, 3), np.float32))
    with pytest.raises(hk.SignatureError, match="shape"):
        m(np.ones((4, 5), np.float32))
    with pytest.raises(hk.SignatureError):
        m(np.ones((4, 3), np.complex64))
    np.testing.assert_array_equal(m(np.ones((4, 3), np.float64)), m(np.ones((4, 3), np.float32)))
    assert m._fast_calls[None].shapes == {(4, 3)}  # float64 was converted: not a fast-path shape
    with pytest.raises(hk.SignatureError, match="no signature"):
        m(np.ones((4, 3), np.float32), signature="nope")


def test_only_one_input_signatures_returning_their_default_output():
    m = _mlp_module()
    x = np.ones((2, 3), np.float32)
    m({"a": x, "b": x}, signature="two")
    m(x, as_dict=True)
    assert not m._fast_calls


def test_string_inputs_are_always_checked():
    def module_fn():
        s = hk.placeholder(hk.string, [None], name="s")
        hk.add_signature(inputs=s, outputs=hk.text.lower(s))

    m = hk.Module(hk.create_module_spec(module_fn))
    words = np.array(["ab", "c"], dtype=object)
    assert list(m(words)) == ["ab", "c"]
    assert not m._fast_calls
    with pytest.raises(hk.SignatureError, match="expects strings"):
        m(np.array(["ab", 3], dtype=object))
