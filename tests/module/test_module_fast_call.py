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


@pytest.mark.parametrize("as_dict", [False, True])
def test_a_dict_of_the_one_input_takes_the_fast_path_too(monkeypatch, as_dict):
    """``m({name: array}, as_dict=...)``, as onnxruntime's callers write it: the same results, shapes and dtypes
    remembered per (signature, as_dict); another name, shape or dtype goes the checked way."""
    m = _mlp_module()
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    first = m({"default": x}, as_dict=as_dict)
    fast = m._fast_calls[(None, as_dict)]
    assert fast.name == "default" and fast.shapes == {(4, 3)}
    from hubkit.module import module as module_mod

    packs = []
    pack = module_mod.pack_inputs
    monkeypatch.setattr(module_mod, "pack_inputs", lambda *a: packs.append(1) or pack(*a))
    again = m({"default": x}, as_dict=as_dict)
    assert packs == []  # not packed nor checked again
    if as_dict:
        assert list(again) == list(first) == ["default"]
        np.testing.assert_array_equal(again["default"], first["default"])
    else:
        np.testing.assert_array_equal(again, first)
    with pytest.raises(hk.SignatureError, match="'x'"):
        m({"x": x}, as_dict=as_dict)
    with pytest.raises(hk.SignatureError, match="shape"):
        m({"default": np.ones((4, 5), np.float32)}, as_dict=as_dict)
    m({"default": x.astype(np.float64)}, as_dict=as_dict)  # converted: not remembered
    assert fast.shapes == {(4, 3)}
    m.variable_map["dense/kernel"].assign(np.zeros((3, 2), np.float32))  # the fast path reads the variables
    got = m({"default": x}, as_dict=as_dict)
    np.testing.assert_array_equal(got["default"] if as_dict else got,
                                  np.maximum(m.variable_map["dense/bias"].value, 0) + np.zeros((4, 2)))


def test_a_dict_call_of_a_signature_without_a_default_output_is_remembered_with_as_dict():
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 3], name="x")
        hk.add_signature(inputs={"x": x}, outputs={"double": x * 2.0, "square": x * x})

    m = hk.Module(hk.create_module_spec(module_fn))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for _ in range(2):
        got = m({"x": x}, as_dict=True)
        assert sorted(got) == ["double", "square"]
        np.testing.assert_array_equal(got["double"], x * 2)
        np.testing.assert_array_equal(got["square"], x * x)
    assert m._fast_calls[(None, True)].shapes == {(2, 3)}
    with pytest.raises(hk.SignatureError, match="no 'default' output"):
        m({"x": x})
