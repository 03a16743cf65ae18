"""Weight regularizers, declarative as initializers are: ``hubkit.regularizers.l2(1e-4)``.

A regularizer is called on a variable's tensor and returns a scalar loss tensor;
``get_variable(..., regularizer=r)`` puts that loss into ``GraphKeys.REGULARIZATION_LOSSES``.
``.config`` is plain data and :func:`get` rebuilds a regularizer from it.

>>> l2(0.5).config
{'class_name': 'l2', 'config': {'scale': 0.5}}
>>> get({'class_name': 'l1_l2', 'config': {'l1': 0.1, 'l2': 0.2}})
hubkit.regularizers.l1_l2(l1=0.1, l2=0.2)
"""

from __future__ import annotations

from typing import Any

from hubkit.errors import GraphError
from hubkit.graph import Tensor
from hubkit.runtime.declarative import Declarative, from_identifier

__all__ = ["Regularizer", "get", "l1", "l1_l2", "l2"]


def _scale(value: Any, what: str) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise GraphError(f"Regularizer {what} must be a number, got {value!r}.") from None
    if s < 0:
        raise GraphError(f"Regularizer {what} must not be negative, got {s!r}.")
    return s


class Regularizer(Declarative):
    """Base class: ``__call__(tensor)`` builds the scalar penalty of ``tensor`` in its graph."""

    kind = "regularizer"
    namespace = "hubkit.regularizers"

    def _terms(self) -> tuple[float, float]:
        """(l1 scale, l2 scale)."""
        raise NotImplementedError

    def __call__(self, x: Any) -> Tensor:
        """``l1 * sum(|x|) + l2 * sum(x**2)``, in ``x``'s dtype."""
        from hubkit.graph import constant, convert_to_tensor
        from hubkit.ops import api

        t = convert_to_tensor(x)
        a, b = self._terms()
        with t.graph.as_default():
            loss = api.multiply(api.reduce_sum(api.abs(t)), constant(a, dtype=t.dtype)) if a else None
            if b:
                term = api.multiply(api.reduce_sum(api.square(t)), constant(b, dtype=t.dtype))
                loss = term if loss is None else api.add(loss, term)
            if loss is None:
                loss = constant(0.0, dtype=t.dtype)
        return loss


class l1(Regularizer):  # lower-case: the public name is the TF one
    """``scale * sum(|x|)``."""

    class_name = "l1"

    def __init__(self, scale: float = 0.01) -> None:
        self.scale = _scale(scale, "scale")

    def _params(self):
        return {"scale": self.scale}

    def _terms(self):
        return self.scale, 0.0


class l2(Regularizer):
    """``scale * sum(x**2)`` (TensorFlow 1's ``l2_regularizer`` halves this; this one does not)."""

    class_name = "l2"

    def __init__(self, scale: float = 0.01) -> None:
        self.scale = _scale(scale, "scale")

    def _params(self):
        return {"scale": self.scale}

    def _terms(self):
        return 0.0, self.scale


class l1_l2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x**2)``."""

    class_name = "l1_l2"

    def __init__(self, l1: float = 0.01, l2: float = 0.01) -> None:
        self.l1 = _scale(l1, "l1")
        self.l2 = _scale(l2, "l2")

    def _params(self):
        return {"l1": self.l1, "l2": self.l2}

    def _terms(self):
        return self.l1, self.l2


_BY_NAME: dict[str, type[Regularizer]] = {c.class_name: c for c in (l1, l2, l1_l2)}


def get(identifier: Any) -> Regularizer | None:
    """Turns a name (default scales), a config dict or a regularizer into a regularizer.

    Raises:
        GraphError: the name is unknown or the config does not fit.
    """
    return from_identifier(identifier, Regularizer, _BY_NAME)
