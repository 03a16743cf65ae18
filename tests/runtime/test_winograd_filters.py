"""Fused NHWC convolutions keep their Winograd filter transform between calls (ops/conv_fused.WinogradFilters).

The transform is made once per filter value: again after the variable is written (in place or
replaced), and on every call for filters the plan computes. Results are checked against the
unoptimised plan, whose convolution makes the transform itself each call.
"""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops import _numba, _winograd43
from hubkit.ops.registry import apply
from tests.helpers_plans import plain_and_optimised

C, K, SIZE, BATCH = 8, 6, 32, 4  # 8 x 8 tiles per image: 256 tiles, the F(4x4, 3x3) threshold

pytestmark = pytest.mark.skipif(not _numba.numba_enabled(), reason="Winograd F(4x4, 3x3) needs Numba")


@pytest.fixture
def transforms(monkeypatch):
    """Counts F(4x4, 3x3) filter transforms of ``C x K`` filters (those of the graphs below)."""
    made: list[int] = []
    real = _winograd43.filter_transform

    def counting(w, dtype):
        if w.shape[2:] == (C, K):
            made.append(1)
        return real(w, dtype)

    monkeypatch.setattr(_winograd43, "filter_transform", counting)
    return made


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * (np.abs(want).max() + 1))


def _conv(kind: str, x, w, pool: bool):
    if kind == "tf1":
        h = apply("TfConv2D", x, w, strides=[1, 1, 1, 1], padding="SAME", explicit_paddings=[],
                  dilations=[1, 1, 1, 1], data_format="NHWC", depthwise=False)
        h = hk.nn.relu(h)
        if pool:
            h = apply("TfPool", h, kind="max", ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID",
                      explicit_paddings=[])
        return h
    h = hk.nn.relu(hk.nn.bias_add(hk.nn.conv2d(x, w, strides=1, padding="SAME"), hk.constant(np.ones(K, np.float32))))
    return hk.nn.max_pool2d(h, 2, 2, "VALID") if pool else h


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("kind", ["hubkit", "tf1"])
def test_the_transform_is_made_once_and_again_after_a_write(transforms, kind, pool):
    rng = np.random.default_rng(5)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, SIZE, SIZE, C], name="x")
        w = hk.Variable(rng.standard_normal((3, 3, C, K)).astype(np.float32), name="w")
        y = _conv(kind, x, w, pool)
    plain, opt = plain_and_optimised(g, [y], [x])
    xv = rng.standard_normal((BATCH, SIZE, SIZE, C)).astype(np.float32)
    want = plain.run([xv])[0]
    del transforms[:]
    for _ in range(3):
        _close(opt.run([xv])[0], want)
    assert len(transforms) == 1

    w.assign(w.value * -0.5)  # in place: the same array, new values
    want2 = plain.run([xv])[0]
    del transforms[:]
    for _ in range(2):
        _close(opt.run([xv])[0], want2)
    assert len(transforms) == 1 and not np.allclose(want2, want)

    w._value = rng.standard_normal((3, 3, C, K)).astype(np.float32)  # a new array
    want3 = plain.run([xv])[0]
    del transforms[:]
    _close(opt.run([xv])[0], want3)
    _close(opt.run([xv])[0], want3)
    assert len(transforms) == 1


def test_computed_filters_are_transformed_on_every_call(transforms):
    """A filter made inside the plan from its input is not cached: the same output buffer can hold new values."""
    rng = np.random.default_rng(6)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, SIZE, SIZE, C], name="x")
        s = hk.placeholder(hk.float32, [], name="s")
        w = hk.multiply(hk.constant(rng.standard_normal((3, 3, C, K)).astype(np.float32)), s)
        y = _conv("hubkit", x, w, False)
    plain, opt = plain_and_optimised(g, [y], [x, s])
    xv = rng.standard_normal((BATCH, SIZE, SIZE, C)).astype(np.float32)
    for scale in (1.0, -2.0, 0.5):
        sv = np.float32(scale)
        _close(opt.run([xv, sv])[0], plain.run([xv, sv])[0])
