"""A fused chain runs at its sink's place: operands its earlier members read must still be alive there."""

import numpy as np

import hubkit as hk


def test_layer_norm_from_second_moments_runs_fused():
    # mean * mean is fused into the variance chain, which runs after x - mean used to free `mean`.
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 256])
        c = np.float32(1 / 256)
        mean = hk.multiply(hk.reduce_sum(x, axis=[1], keepdims=True), c)
        ex2 = hk.multiply(hk.reduce_sum(hk.multiply(x, x), axis=[1], keepdims=True), c)
        var = hk.maximum(np.float32(0), hk.subtract(ex2, hk.multiply(mean, mean)))
        y = hk.multiply(hk.subtract(x, mean), hk.rsqrt(hk.add(var, np.float32(1e-6))))
    xv = np.random.default_rng(0).random((64, 256)).astype(np.float32)
    m = xv.mean(1, keepdims=True)
    v = np.maximum(0, (xv * xv).mean(1, keepdims=True) - m * m)
    np.testing.assert_allclose(hk.Session(g).run(y, {x: xv}), (xv - m) / np.sqrt(v + 1e-6), rtol=1e-4, atol=1e-4)
