"""Losses refuse integer predictions and label smoothing outside [0, 1] or without a class count."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


@pytest.mark.parametrize(
    ("loss", "role"),
    [
        (hk.losses.mean_squared_error, "predictions"),
        (hk.losses.absolute_difference, "predictions"),
        (hk.losses.huber_loss, "predictions"),
        (hk.losses.log_loss, "predictions"),
        (hk.losses.softmax_cross_entropy, "logits"),
        (hk.losses.sigmoid_cross_entropy, "logits"),
    ],
)
def test_integer_predictions_are_refused_naming_the_loss_and_the_tensor(graph, loss, role):
    ints = hk.constant(np.array([[1, 0]], np.int32), name="ints")
    name = loss.__name__
    with pytest.raises(
        hk.GraphError, match=rf"{name}: {role} 'ints:0' must be float32 or float64, not int32\."
    ):
        loss(np.array([[1.0, 0.0]], np.float32), ints)


@pytest.mark.parametrize("loss", [hk.losses.softmax_cross_entropy, hk.losses.sigmoid_cross_entropy])
@pytest.mark.parametrize("smoothing", [-0.1, 1.5, float("nan")])
def test_label_smoothing_outside_zero_one_is_refused(graph, loss, smoothing):
    logits = hk.placeholder(hk.float32, [None, 3])
    with pytest.raises(
        hk.GraphError, match=rf"{loss.__name__}: label_smoothing must be in \[0, 1\]; got {smoothing!r}"
    ):
        loss(np.eye(3, dtype=np.float32), logits, label_smoothing=smoothing)


def test_label_smoothing_needs_a_known_number_of_classes(graph):
    logits = hk.placeholder(hk.float32, [None, None])
    labels = hk.placeholder(hk.float32, [None, None])
    with pytest.raises(
        hk.GraphError, match="softmax_cross_entropy: label smoothing needs logits with a known number"
    ):
        hk.losses.softmax_cross_entropy(labels, logits, label_smoothing=0.1)
    hk.losses.softmax_cross_entropy(labels, logits)  # without smoothing the class count is not needed
    hk.losses.sigmoid_cross_entropy(labels, logits, label_smoothing=0.1)  # binary: always two classes
