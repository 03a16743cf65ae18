"""``hubkit.losses``: training losses with TF1's ``tf.losses`` argument order and reduction.

Every loss takes ``(labels, predictions_or_logits, weights=1.0, ...)``, reduces to a scalar (by
default the weighted mean over the elements with non-zero weight, TF1's
``SUM_BY_NONZERO_WEIGHTS``) and adds it to ``GraphKeys.LOSSES`` so :func:`get_total_loss` finds it.

>>> import hubkit as hk
>>> g = hk.Graph()
>>> with g.as_default():
...     loss = hk.losses.mean_squared_error([[1.0, 2.0]], hk.constant([[1.0, 4.0]]))
>>> float(hk.Session(g).run(loss))
2.0
"""

from __future__ import annotations

from typing import Any

from hubkit.errors import GraphError
from hubkit.graph import GraphKeys, Tensor, convert_to_tensor, format_shape, get_default_graph
from hubkit.graph.shapes import broadcast_shapes, merge_shapes
from hubkit.ops import elementwise as _ew
from hubkit.ops import nn as _nn
from hubkit.ops import reduce as _rd

__all__ = [
    "Reduction",
    "absolute_difference",
    "compute_weighted_loss",
    "get_losses",
    "get_regularization_loss",
    "get_regularization_losses",
    "get_total_loss",
    "huber_loss",
    "log_loss",
    "mean_squared_error",
    "sigmoid_cross_entropy",
    "softmax_cross_entropy",
    "sparse_softmax_cross_entropy",
]


class Reduction:
    """How a loss reduces its per-element values, as ``tf.losses.Reduction``."""

    NONE = "none"
    SUM = "weighted_sum"
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"
    MEAN = "weighted_mean"
    SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"

    @classmethod
    def all(cls) -> list[str]:
        return sorted([cls.NONE, cls.SUM, cls.SUM_OVER_BATCH_SIZE, cls.MEAN, cls.SUM_BY_NONZERO_WEIGHTS])


def _graph_of(*values: Any):
    for v in values:
        if isinstance(v, Tensor):
            return v.graph
    return get_default_graph()


def _pair(labels: Any, predictions: Any, fn: str, what: tuple[str, str] = ("labels", "predictions")):
    """Both as tensors of the predictions' float dtype, with compatible static shapes."""
    g = _graph_of(predictions, labels)
    pred = convert_to_tensor(predictions, graph=g)
    if not pred.dtype.is_floating:
        raise GraphError(f"{fn}: {what[1]} {pred.name!r} must be float32 or float64, not {pred.dtype.name}.")
    lab = labels if isinstance(labels, Tensor) else convert_to_tensor(labels, dtype=pred.dtype, graph=g)
    if lab.dtype is not pred.dtype:
        lab = _ew.cast(lab, pred.dtype)
    if merge_shapes(lab.shape, pred.shape) is False:
        raise GraphError(
            f"{fn}: {what[0]} {lab.name!r} of shape {format_shape(lab.shape)} does not match "
            f"{what[1]} {pred.name!r} of shape {format_shape(pred.shape)}."
        )
    return lab, pred


def _is_number(w: Any) -> bool:
    return isinstance(w, (int, float)) and not isinstance(w, bool)


def compute_weighted_loss(
    losses: Any,
    weights: Any = 1.0,
    scope: str | None = None,
    loss_collection: str | None = GraphKeys.LOSSES,
    reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS,
) -> Tensor:
    """Weights and reduces per-element ``losses``, as ``tf.losses.compute_weighted_loss``.

    Args:
        losses: float tensor of per-element losses.
        weights: a number, or a tensor broadcastable to ``losses``.
        scope: name scope of the nodes.
        loss_collection: collection the result is added to (None for none).
        reduction: one of the :class:`Reduction` values.

    Returns:
        A scalar (a tensor like ``losses`` for ``Reduction.NONE``).

    Raises:
        GraphError: unknown reduction, or weights that do not broadcast to ``losses``.
    """
    if reduction not in Reduction.all():
        raise GraphError(f"Unknown loss reduction {reduction!r}; expected one of {Reduction.all()}.")
    lt = convert_to_tensor(losses, graph=_graph_of(losses))
    g = lt.graph
    with g.name_scope(scope or "weighted_loss"):
        scalar = _is_number(weights)
        if scalar:
            weighted = lt if weights == 1.0 else _ew.multiply(lt, float(weights))
        else:
            w = convert_to_tensor(weights, dtype=lt.dtype, graph=g) if not isinstance(weights, Tensor) else weights
            if w.dtype is not lt.dtype:
                w = _ew.cast(w, lt.dtype)
            if broadcast_shapes(w.shape, lt.shape) is False or (
                w.shape is not None and lt.shape is not None and len(w.shape) > len(lt.shape)
            ):
                raise GraphError(
                    f"Loss weights {w.name!r} of shape {format_shape(w.shape)} do not broadcast to the "
                    f"losses {lt.name!r} of shape {format_shape(lt.shape)}."
                )
            weighted = _ew.multiply(lt, w)
        if reduction == Reduction.NONE:
            out = weighted
        elif reduction == Reduction.SUM:
            out = _rd.reduce_sum(weighted)
        elif scalar and reduction == Reduction.MEAN:
            # The mean over weight-sum of a scalar weight is the plain mean; a zero weight gives 0, as
            # TF's safe division does.
            out = _rd.reduce_sum(weighted) if weights == 0.0 else _rd.reduce_mean(lt)
        elif scalar or reduction == Reduction.SUM_OVER_BATCH_SIZE:
            # A non-zero scalar weight counts every element; zero gives 0 either way.
            out = _rd.reduce_mean(weighted)
        else:
            if reduction == Reduction.MEAN:
                denom = _rd.reduce_sum(_ew.multiply(w, _ew.ones_like(lt)))
            else:
                present = _ew.cast(_ew.not_equal(w, 0.0), lt.dtype)
                denom = _rd.reduce_sum(_ew.multiply(present, _ew.ones_like(lt)))
            # A zero denominator has a zero numerator: max(denominator, 1) is TF's safe division.
            out = _ew.divide(_rd.reduce_sum(weighted), _ew.maximum(denom, 1.0))
    if loss_collection is not None:
        g.add_to_collection(loss_collection, out)
    return out


def mean_squared_error(
    labels: Any,
    predictions: Any,
    weights: Any = 1.0,
    scope: str | None = None,
    loss_collection: str | None = GraphKeys.LOSSES,
    reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS,
) -> Tensor:
    """Mean of ``(predictions - labels) ** 2``.

    Args:
        labels: targets, shaped like ``predictions`` (converted to its dtype).
        predictions: float tensor.
        weights, scope, loss_collection, reduction: as in :func:`compute_weighted_loss`.

    Returns:
        A scalar loss.

    Raises:
        GraphError: the shapes of ``labels`` and ``predictions`` differ (both are named).
    """
    lab, pred = _pair(labels, predictions, "mean_squared_error")
    with pred.graph.name_scope(scope or "mean_squared_error"):
        losses = _ew.square(_ew.subtract(pred, lab))
        return compute_weighted_loss(losses, weights, None, loss_collection, reduction)


def absolute_difference(
    labels: Any,
    predictions: Any,
    weights: Any = 1.0,
    scope: str | None = None,
    loss_collection: str | None = GraphKeys.LOSSES,
    reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS,
) -> Tensor:
    """Mean of ``|predictions - labels|``; arguments as in :func:`mean_squared_error`."""
    lab, pred = _pair(labels, predictions, "absolute_difference")
    with pred.graph.name_scope(scope or "absolute_difference"):
        losses = _ew.abs(_ew.subtract(pred, lab))
        return compute_weighted_loss(losses, weights, None, loss_collection, reduction)


def huber_loss(
    labels: Any,
    predictions: Any,
    weights: Any = 1.0,
    delta: float = 1.0,
    scope: str | None = None,
    loss_collection: str | None = GraphKeys.LOSSES,
    reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS,
) -> Tensor:
    """Mean Huber loss: ``0.5 e**2`` where ``|e| <= delta``, else ``delta * (|e| - 0.5 delta)``."""
    lab, pred = _pair(labels, predictions, "huber_loss")
    with pred.graph.name_scope(scope or "huber_loss"):
        error = _ew.abs(_ew.subtract(pred, lab))
        quadratic = _ew.minimum(error, float(delta))
        linear = _ew.subtract(error, quadratic)
        losses = _ew.add(_ew.multiply(_ew.square(quadratic), 0.5), _ew.multiply(linear, float(delta)))
        return compute_weighted_loss(losses, weights, None, loss_collection, reduction)


def log_loss(
    labels: Any,
    predictions: Any,
    weights: Any = 1.0,
    epsilon: float = 1e-7,
    scope: str | None = None,
    loss_collection: str | None = GraphKeys.LOSSES,
    reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS,
) -> Tensor:
    """Mean of ``-labels log(p + eps) - (1 - labels) log(1 - p + eps)`` for probabilities ``p``."""
    lab, pred = _pair(labels, predictions, "log_loss")
    with pred.graph.name_scope(scope or "log_loss"):
        pos = _ew.multiply(lab, _ew.log(_ew.add(pred, float(epsilon))))
        neg = _ew.multiply(_ew.subtract(1.0, lab), _ew.log(_ew.add(_ew.subtract(1.0, pred), float(epsilon))))
        losses = _ew.negative(_ew.add(pos, neg))
        return compute_weighted_loss(losses, weights, None, loss_collection, reduction)


def sparse_softmax_cross_entropy(
    labels: Any,
    logits: Any,
    weights: Any = 1.0,
    scope: str | None = None,
    loss_collection: str | None = GraphKeys.LOSSES,
    reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS,
) -> Tensor:
    """Mean cross-entropy of integer class ``labels`` ``[batch]`` for ``logits`` ``[batch, classes]``.

    Raises:
        GraphError: ``labels`` is not shaped like ``logits`` without its last axis (both are named).
    """
    g = _graph_of(logits, labels)
    lt = convert_to_tensor(logits, graph=g)
    lab = convert_to_tensor(labels, graph=g)
    batch = None if lt.shape is None else lt.shape[:-1]
    if merge_shapes(lab.shape, batch) is False:
        raise GraphError(
            f"sparse_softmax_cross_entropy: labels {lab.name!r} of shape {format_shape(lab.shape)} must have "
            f"the shape of logits {lt.name!r} of shape {format_shape(lt.shape)} without its last dimension."
        )
    with g.name_scope(scope or "sparse_softmax_cross_entropy_loss"):
        losses = _nn.sparse_softmax_cross_entropy_with_logits(labels=lab, logits=lt, name="xentropy")
        return compute_weighted_loss(losses, weights, None, loss_collection, reduction)


def _smooth(labels: Tensor, smoothing: float, classes: Any, fn: str) -> Tensor:
    if smoothing == 0:
        return labels
    if not 0.0 < smoothing <= 1.0:
        raise GraphError(f"{fn}: label_smoothing must be in [0, 1]; got {smoothing!r}.")
    if classes is None:
        raise GraphError(f"{fn}: label smoothing needs logits with a known number of classes.")
    return _ew.add(_ew.multiply(labels, 1.0 - smoothing), smoothing / classes)


def softmax_cross_entropy(
    onehot_labels: Any,
    logits: Any,
    weights: Any = 1.0,
    label_smoothing: float = 0.0,
    scope: str | None = None,
    loss_collection: str | None = GraphKeys.LOSSES,
    reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS,
) -> Tensor:
    """Mean cross-entropy of one-hot (or probability) labels for ``logits`` ``[batch, classes]``.

    Args:
        onehot_labels: float labels shaped like ``logits``.
        logits: float tensor.
        weights: per-example weights or a number.
        label_smoothing: ``labels * (1 - s) + s / num_classes``.
        scope, loss_collection, reduction: as in :func:`compute_weighted_loss`.

    Returns:
        A scalar loss.
    """
    lab, lt = _pair(onehot_labels, logits, "softmax_cross_entropy", ("onehot_labels", "logits"))
    with lt.graph.name_scope(scope or "softmax_cross_entropy_loss"):
        classes = None if lt.shape is None or not lt.shape else lt.shape[-1]
        lab = _smooth(lab, label_smoothing, classes, "softmax_cross_entropy")
        losses = _nn.softmax_cross_entropy_with_logits(labels=_ew.stop_gradient(lab), logits=lt, name="xentropy")
        return compute_weighted_loss(losses, weights, None, loss_collection, reduction)


def sigmoid_cross_entropy(
    multi_class_labels: Any,
    logits: Any,
    weights: Any = 1.0,
    label_smoothing: float = 0.0,
    scope: str | None = None,
    loss_collection: str | None = GraphKeys.LOSSES,
    reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS,
) -> Tensor:
    """Mean logistic loss of independent binary ``multi_class_labels`` for ``logits`` of the same shape.

    ``label_smoothing`` maps labels to ``labels * (1 - s) + 0.5 s``.
    """
    lab, lt = _pair(multi_class_labels, logits, "sigmoid_cross_entropy", ("multi_class_labels", "logits"))
    with lt.graph.name_scope(scope or "sigmoid_cross_entropy_loss"):
        lab = _smooth(lab, label_smoothing, 2, "sigmoid_cross_entropy")
        losses = _nn.sigmoid_cross_entropy_with_logits(labels=lab, logits=lt, name="xentropy")
        return compute_weighted_loss(losses, weights, None, loss_collection, reduction)


# -- collections ---------------------------------------------------------------------------------------
def _in_scope(items: list[Any], scope: str | None) -> list[Any]:
    if scope is None:
        return items
    return [t for t in items if getattr(t, "name", "").startswith(scope)]


def get_losses(scope: str | None = None, loss_collection: str = GraphKeys.LOSSES) -> list[Any]:
    """The losses in ``loss_collection`` of the default graph (names starting with ``scope``)."""
    return _in_scope(get_default_graph().get_collection(loss_collection), scope)


def get_regularization_losses(scope: str | None = None) -> list[Any]:
    """The tensors in ``GraphKeys.REGULARIZATION_LOSSES`` of the default graph."""
    return _in_scope(get_default_graph().get_collection(GraphKeys.REGULARIZATION_LOSSES), scope)


def get_regularization_loss(scope: str | None = None, name: str = "total_regularization_loss") -> Tensor:
    """The sum of the regularization losses, or a constant 0.0 when there are none."""
    losses = get_regularization_losses(scope)
    g = get_default_graph()
    if not losses:
        return convert_to_tensor(0.0, graph=g, name=name)
    with g.name_scope(name):
        return _ew.add_n(losses)


def get_total_loss(add_regularization_losses: bool = True, name: str = "total_loss", scope: str | None = None):
    """The sum of the losses in ``GraphKeys.LOSSES``, plus the regularization losses by default.

    Raises:
        GraphError: there are no losses at all.
    """
    losses = get_losses(scope)
    if add_regularization_losses:
        losses = losses + get_regularization_losses(scope)
    if not losses:
        raise GraphError(
            f"get_total_loss: no losses found in collections {sorted([GraphKeys.LOSSES, GraphKeys.REGULARIZATION_LOSSES])}."
        )
    with get_default_graph().name_scope(name):
        return _ew.add_n(losses)
