"""Declarative initializers: plain data (a name and a config) that can make a variable's first value.

An initializer is stored in the graph as its ``config`` (``{"class_name": "glorot_uniform",
"config": {"seed": 3}}``), so a graph can be saved and loaded without code; :func:`get` rebuilds
the initializer from that config. Calling one, ``init(shape, dtype)``, returns a NumPy array.
Seeded initializers are deterministic: the same seed, shape and dtype give the same array.

>>> init = glorot_uniform(seed=3)
>>> init.config
{'class_name': 'glorot_uniform', 'config': {'seed': 3}}
>>> bool((get(init.config)((4, 2), "float32") == init((4, 2), "float32")).all())
True
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import DType, as_dtype, normalize_shape
from hubkit.runtime.declarative import Declarative, from_identifier

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


class Initializer(Declarative):
    """Base class: subclasses define ``class_name``, ``_params()`` and ``_generate(shape, np_dtype)``."""

    kind = "initializer"
    namespace = "hubkit.initializers"
    identifier_hint = "(use hubkit.initializers.constant(value) for values)"

    def __call__(self, shape: Any, dtype: Any = "float32") -> np.ndarray:
        """Returns a new array of ``shape`` and ``dtype`` (a hubkit dtype, its name or a NumPy dtype)."""
        sh = normalize_shape(shape)
        if sh is None or any(d is None for d in sh):
            raise GraphError(f"Initializer {self.class_name!r} needs a fully known shape, got {shape!r}.")
        dt = as_dtype(dtype)
        if not dt.is_numeric and dt.name != "bool":
            raise GraphError(f"Initializer {self.class_name!r} cannot make values of dtype {dt.name}.")
        return self._generate(sh, dt)

    def _generate(self, shape: tuple[int, ...], dtype: DType) -> np.ndarray:
        raise NotImplementedError


def _rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(seed)


def _float_kind(dtype: DType, name: str) -> None:
    if not dtype.is_floating:
        raise GraphError(f"Initializer {name!r} makes floating-point values; dtype {dtype.name} is not one.")


class Zeros(Initializer):
    """All zeros."""

    class_name = "zeros"

    def _generate(self, shape, dtype):
        return np.zeros(shape, dtype=dtype.np_dtype)


class Ones(Initializer):
    """All ones."""

    class_name = "ones"

    def _generate(self, shape, dtype):
        return np.ones(shape, dtype=dtype.np_dtype)


class Constant(Initializer):
    """A scalar broadcast to the shape, or an array of exactly that shape.

    Args:
        value: a number or a (nested list / NumPy) array.
    """

    class_name = "constant"

    def __init__(self, value: Any = 0.0) -> None:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise GraphError(f"constant initializer needs numbers, got {value!r}.")
        self.value = arr

    def _params(self):
        return {"value": self.value.tolist()}

    def _generate(self, shape, dtype):
        if self.value.ndim and tuple(self.value.shape) != shape:
            raise GraphError(
                f"constant initializer of shape {list(self.value.shape)} cannot fill a variable of shape {list(shape)}."
            )
        return np.array(np.broadcast_to(self.value, shape), dtype=dtype.np_dtype)


class RandomNormal(Initializer):
    """Samples from a normal distribution N(mean, stddev**2)."""

    class_name = "random_normal"

    def __init__(self, mean: float = 0.0, stddev: float = 1.0, seed: int | None = None) -> None:
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed

    def _params(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}

    def _generate(self, shape, dtype):
        _float_kind(dtype, self.class_name)
        return _rng(self.seed).normal(self.mean, self.stddev, shape).astype(dtype.np_dtype)


class RandomUniform(Initializer):
    """Samples uniformly from ``[minval, maxval)``."""

    class_name = "random_uniform"

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None) -> None:
        self.minval, self.maxval, self.seed = float(minval), float(maxval), seed

    def _params(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}

    def _generate(self, shape, dtype):
        _float_kind(dtype, self.class_name)
        return _rng(self.seed).uniform(self.minval, self.maxval, shape).astype(dtype.np_dtype)


def _truncated(rng: np.random.Generator, shape: tuple[int, ...], stddev: float) -> np.ndarray:
    """N(0, stddev**2) with samples beyond two standard deviations redrawn, as TensorFlow does."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * stddev


class TruncatedNormal(Initializer):
    """A normal distribution with values beyond two standard deviations redrawn."""

    class_name = "truncated_normal"

    def __init__(self, mean: float = 0.0, stddev: float = 1.0, seed: int | None = None) -> None:
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed

    def _params(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}

    def _generate(self, shape, dtype):
        _float_kind(dtype, self.class_name)
        return (self.mean + _truncated(_rng(self.seed), shape, self.stddev)).astype(dtype.np_dtype)


def _fans(shape: tuple[int, ...]) -> tuple[float, float]:
    """(fan_in, fan_out): a kernel ``[..., in, out]``'s leading dims are its receptive field."""
    if not shape:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


_MODES = ("fan_avg", "fan_in", "fan_out")
_DISTRIBUTIONS = ("truncated_normal", "uniform", "untruncated_normal")
# Standard deviation of N(0, 1) truncated to [-2, 2]: dividing by it keeps the requested variance.
_TRUNCATED_STD = 0.87962566103423978


class VarianceScaling(Initializer):
    """Random values with variance ``scale / fan`` (the Glorot, He and LeCun families).

    Args:
        scale: the variance numerator.
        mode: which fan divides it: "fan_in", "fan_out" or "fan_avg".
        distribution: "truncated_normal", "untruncated_normal" or "uniform".
        seed: makes the values deterministic.
    """

    class_name = "variance_scaling"

    def __init__(
        self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal", seed: int | None = None
    ) -> None:
        if scale <= 0:
            raise GraphError(f"variance_scaling needs a positive scale, got {scale!r}.")
        if mode not in _MODES:
            raise GraphError(f"Unknown variance_scaling mode {mode!r}; expected one of {sorted(_MODES)}.")
        if distribution not in _DISTRIBUTIONS:
            raise GraphError(
                f"Unknown variance_scaling distribution {distribution!r}; expected one of {sorted(_DISTRIBUTIONS)}."
            )
        self.scale, self.mode, self.distribution, self.seed = float(scale), mode, distribution, seed

    def _params(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}

    def _generate(self, shape, dtype):
        _float_kind(dtype, self.class_name)
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        rng = _rng(self.seed)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            out = rng.uniform(-limit, limit, shape)
        elif self.distribution == "untruncated_normal":
            out = rng.normal(0.0, math.sqrt(variance), shape)
        else:
            out = _truncated(rng, shape, math.sqrt(variance) / _TRUNCATED_STD)
        return out.astype(dtype.np_dtype)


class _Preset(VarianceScaling):
    """A named VarianceScaling whose config holds only the seed."""

    preset: ClassVar[tuple[float, str, str]] = (1.0, "fan_in", "truncated_normal")

    def __init__(self, seed: int | None = None) -> None:
        scale, mode, distribution = self.preset
        super().__init__(scale, mode, distribution, seed)

    def _params(self):
        return {"seed": self.seed}


class glorot_uniform(_Preset):  # lower-case: the public name is the TF one
    """Uniform in ``±sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio, 2010)."""

    class_name = "glorot_uniform"
    preset = (1.0, "fan_avg", "uniform")


class glorot_normal(_Preset):
    """Truncated normal with variance ``2 / (fan_in + fan_out)``."""

    class_name = "glorot_normal"
    preset = (1.0, "fan_avg", "truncated_normal")


class he_normal(_Preset):
    """Truncated normal with variance ``2 / fan_in`` (He et al., 2015), for ReLU layers."""

    class_name = "he_normal"
    preset = (2.0, "fan_in", "truncated_normal")


class he_uniform(_Preset):
    """Uniform with variance ``2 / fan_in``."""

    class_name = "he_uniform"
    preset = (2.0, "fan_in", "uniform")


class lecun_normal(_Preset):
    """Truncated normal with variance ``1 / fan_in``."""

    class_name = "lecun_normal"
    preset = (1.0, "fan_in", "truncated_normal")


class lecun_uniform(_Preset):
    """Uniform with variance ``1 / fan_in``."""

    class_name = "lecun_uniform"
    preset = (1.0, "fan_in", "uniform")


zeros = Zeros
ones = Ones
constant = Constant
random_normal = RandomNormal
random_uniform = RandomUniform
truncated_normal = TruncatedNormal
variance_scaling = VarianceScaling

_BY_NAME: dict[str, type[Initializer]] = {
    cls.class_name: cls
    for cls in (
        Zeros,
        Ones,
        Constant,
        RandomNormal,
        RandomUniform,
        TruncatedNormal,
        VarianceScaling,
        glorot_uniform,
        glorot_normal,
        he_normal,
        he_uniform,
        lecun_normal,
        lecun_uniform,
    )
}


def get(identifier: Any) -> Initializer | None:
    """Turns a name, a config dict or an initializer into an initializer (None stays None).

    Args:
        identifier: ``"glorot_uniform"``, ``{"class_name": "constant", "config": {"value": 2.0}}``,
            or an :class:`Initializer`.

    Raises:
        GraphError: the name is unknown or the config does not fit the initializer.

    >>> get("zeros")((2,), "int32")
    array([0, 0], dtype=int32)
    """
    return from_identifier(identifier, Initializer, _BY_NAME)
