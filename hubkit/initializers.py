"""Declarative initializers, TensorFlow-style: ``hubkit.initializers.glorot_uniform(seed=1)``.

Each initializer is callable as ``init(shape, dtype) -> np.ndarray``, exposes ``.config`` (plain
JSON-able data) and is deterministic when seeded; :func:`get` accepts a name, a config dict or an
initializer. The implementations live in :mod:`hubkit.runtime.initializers`.
"""

from hubkit.runtime import initializers as _impl
from hubkit.runtime.initializers import *  # noqa: F403 -- the public names are exactly _impl.__all__

__all__ = _impl.__all__
