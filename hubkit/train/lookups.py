"""The lookup tables of ``Model.compile``: losses, metrics and optimizers by name (or as given).

``compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])`` resolves each string
here; a callable or an optimizer object passes through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hubkit import losses
from hubkit.errors import GraphError
from hubkit.graph import Tensor, format_shape
from hubkit.ops import api

__all__ = ["LOSSES", "SPARSE_LOSSES", "get_loss", "get_metric", "get_optimizer"]


# -- losses and metrics by name ---------------------------------------------------------------------
def _clip(p: Tensor) -> Tensor:
    return api.clip_by_value(p, 1e-7, 1.0 - 1e-7)


# Losses on probabilities that hubkit.losses has no twin for (it works on logits); everything else
# below delegates to hubkit.losses, which checks the labels' shape against the predictions'.
def _sparse_ce(labels: Tensor, probs: Tensor) -> Tensor:
    depth = None if not probs.shape else probs.shape[-1]
    if depth is None:
        raise GraphError(
            f"sparse_categorical_crossentropy needs predictions with a known number of classes (last axis); "
            f"{probs.name!r} has shape {format_shape(probs.shape)}."
        )
    return _categorical_ce(api.one_hot(labels, depth, dtype=probs.dtype), probs)


def _categorical_ce(labels: Tensor, probs: Tensor) -> Tensor:
    return api.reduce_mean(-api.reduce_sum(labels * api.log(_clip(probs)), axis=-1))


def _from_losses(name: str, **kwargs: Any) -> Callable[[Tensor, Tensor], Tensor]:
    """``hubkit.losses.<name>`` as ``fn(labels, predictions)``, kept out of the LOSSES collection."""

    def loss(labels: Tensor, predictions: Tensor) -> Tensor:
        fn = getattr(losses, name)
        return fn(labels, predictions, loss_collection=None, **kwargs)

    loss.__name__ = name
    return loss


_mae = _from_losses("absolute_difference")
_mse = _from_losses("mean_squared_error")

LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "binary_crossentropy": _from_losses("log_loss", epsilon=1e-7),
    "categorical_crossentropy": _categorical_ce,
    "mae": _mae,
    "mean_absolute_error": _mae,
    "mean_squared_error": _mse,
    "mse": _mse,
    "sigmoid_cross_entropy": _from_losses("sigmoid_cross_entropy"),
    "softmax_cross_entropy": _from_losses("softmax_cross_entropy"),
    "sparse_categorical_crossentropy": _sparse_ce,
    "sparse_softmax_cross_entropy": _from_losses("sparse_softmax_cross_entropy"),
}
SPARSE_LOSSES = {"sparse_categorical_crossentropy", "sparse_softmax_cross_entropy"}


def get_loss(loss: Any) -> Callable[[Tensor, Tensor], Tensor]:
    """A loss ``fn(labels, predictions) -> scalar`` from a name or a callable.

    Raises:
        GraphError: the name is unknown; the message lists the known ones.
    """
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise GraphError(f"Unknown loss {loss!r}; expected a callable or one of {sorted(LOSSES)}.")
    return LOSSES[loss]


def _accuracy(labels: Tensor, preds: Tensor) -> Tensor:
    if labels.ndim is not None and preds.ndim is not None and labels.ndim < preds.ndim:
        hit = api.equal(api.argmax(preds, axis=-1), api.cast(labels, "int64"))
    elif preds.shape is not None and preds.shape[-1] == 1:
        hit = api.equal(api.cast(api.greater(preds, 0.5), preds.dtype), api.cast(labels, preds.dtype))
    else:
        hit = api.equal(api.argmax(preds, axis=-1), api.argmax(labels, axis=-1))
    return api.reduce_mean(api.cast(hit, "float32"))


_METRICS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "acc": _accuracy,
    "accuracy": _accuracy,
    "binary_accuracy": _accuracy,
    "categorical_accuracy": _accuracy,
    "mae": _mae,
    "mean_absolute_error": _mae,
    "mean_squared_error": _mse,
    "mse": _mse,
    "sparse_categorical_accuracy": _accuracy,
}


def get_metric(metric: Any) -> tuple[str, Callable[[Tensor, Tensor], Tensor]]:
    """``(display name, fn(labels, predictions) -> scalar)`` for a metric name or callable."""
    if callable(metric):
        return getattr(metric, "__name__", "metric"), metric
    if metric not in _METRICS:
        raise GraphError(f"Unknown metric {metric!r}; expected a callable or one of {sorted(_METRICS)}.")
    return ("accuracy" if metric == "acc" else metric), _METRICS[metric]


def get_optimizer(optimizer: Any) -> Any:
    """An optimizer object, or a default-configured one for "sgd", "momentum", "adam", "rmsprop", "adagrad"."""
    from hubkit import train

    if not isinstance(optimizer, str):
        if not callable(getattr(optimizer, "minimize", None)):
            raise GraphError(f"{optimizer!r} is not an optimizer: it has no minimize(loss, var_list).")
        return optimizer
    table = {
        "adagrad": lambda: train.Adagrad(0.01),
        "adam": lambda: train.Adam(0.001),
        "momentum": lambda: train.Momentum(0.01, 0.9),
        "rmsprop": lambda: train.RMSProp(0.001),
        "sgd": lambda: train.GradientDescent(0.01),
    }
    if optimizer.lower() not in table:
        raise GraphError(f"Unknown optimizer {optimizer!r}; expected an optimizer object or one of {sorted(table)}.")
    return table[optimizer.lower()]()
