"""Bad Python values for constants, placeholders and variables give hubkit errors that name them."""

import numpy as np
import pytest

import hubkit as hk


@pytest.mark.parametrize(
    ("value", "dtype", "match"),
    [
        ([[1, 2], [3]], None, "Cannot make a constant from"),
        (object(), None, "expected numbers, bools or strings"),
        (2**40, hk.int32, "outside"),
        (float("nan"), hk.int32, "NaN or infinity"),
        (1.5, hk.int64, "losing its fraction"),
        ("text", hk.float32, "from strings"),
    ],
)
def test_constant_refuses_bad_values(graph, value, dtype, match):
    with pytest.raises(hk.GraphError, match=match):
        hk.constant(value, dtype=dtype)


def test_constant_keeps_explicit_numpy_float_dtypes_and_decodes_bytes(graph):
    assert hk.constant(np.zeros(2)).dtype is hk.float64
    assert hk.constant(np.zeros(2, np.float32)).dtype is hk.float32
    assert hk.constant(0.5).dtype is hk.float32
    assert hk.Session(graph).run(hk.constant(["a", b"b"])).tolist() == ["a", "b"]


@pytest.mark.parametrize("shape", [[-3], [2.5], [True], 3.0])
def test_placeholder_refuses_bad_dimensions(graph, shape):
    with pytest.raises(hk.GraphError, match="Invalid"):
        hk.placeholder(hk.float32, shape)


def test_minus_one_means_unknown(graph):
    assert hk.placeholder(hk.float32, [-1, 3]).shape == (None, 3)


@pytest.mark.parametrize(("value", "match"), [([[1, 2], [3]], "cannot use"), (["a"], "numeric or bool")])
def test_variable_refuses_bad_values(value, match):
    with pytest.raises(hk.GraphError, match=match):
        hk.Variable(value)
