"""Declarative initializers, TensorFlow-style: ``hubkit.initializers.glorot_uniform(seed=1)``.

Each initializer is callable as ``init(shape, dtype) -> np.ndarray``, exposes ``.config`` (plain
JSON-able data) and is deterministic when seeded; :func:`get` accepts a name, a config dict or an
initializer. The implementations live in :mod:`hubkit.runtime.initializers`.
"""

from hubkit.runtime.initializers import (
    Constant,
    Initializer,
    Ones,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    VarianceScaling,
    Zeros,
    constant,
    get,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    lecun_normal,
    lecun_uniform,
    ones,
    random_normal,
    random_uniform,
    truncated_normal,
    variance_scaling,
    zeros,
)

__all__ = [
    "Constant",
    "Initializer",
    "Ones",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
    "constant",
    "get",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "ones",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "variance_scaling",
    "zeros",
]
