"""``Model.summary``: a Keras-style table of layers, output shapes, parameter counts and connections."""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.layers.recording import flatten

__all__ = ["print_summary"]


def _shape_text(shape: Any) -> str:
    if shape is None:
        return "<unknown>"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _output_shape(calls: list[Any]) -> str:
    if not calls:
        return "?"
    shapes = {tuple(_shape_text(t.shape) for t in flatten(c.outputs)) for c in calls}
    if len(shapes) > 1:
        return "multiple"
    (texts,) = shapes
    return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"


def _params(variables: list[Any]) -> int:
    return int(sum(int(np.prod(v.shape)) for v in variables))


def print_summary(model: Any, line_length: int | None = None, print_fn: Any = None) -> None:
    """Prints ``model``'s layers and parameter totals, one row per layer (see ``Model.summary``)."""
    from hubkit.train.functional import InputLayer

    emit = print_fn or print
    refs, _index = model._refs()
    calls_of: dict[int, list[Any]] = {}
    for layer in model._input_layers:
        calls_of[id(layer)] = [layer._inbound[0]]
    for record in model._records:
        calls_of.setdefault(id(record.layer), []).append(record)
    rows = []
    for layer in model.layers:
        calls = calls_of.get(id(layer), [])
        connected = []
        for c in calls:
            for t in c.flat_inputs:
                name, n, i = refs[t]
                connected.append(f"{name}[{n}][{i}]")
        params = 0 if isinstance(layer, InputLayer) else layer.count_params()
        shape = _output_shape(calls)
        if isinstance(layer, InputLayer):
            shape = "[" + shape + "]"
        rows.append((f"{layer.name} ({type(layer).__name__})", shape, f"{params:,}", ", ".join(connected) or "-"))
    headers = ("Layer (type)", "Output Shape", "Param #", "Connected to")
    widths = [max(len(headers[i]), *(len(r[i]) for r in rows)) + 2 for i in range(4)]
    total_width = line_length or sum(widths)
    emit(f'Model: "{model.name}"')
    emit("_" * total_width)
    emit("".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    emit("=" * total_width)
    for k, row in enumerate(rows):
        emit("".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        emit(("_" if k < len(rows) - 1 else "=") * total_width)
    trainable = _params(model.trainable_variables)
    frozen = _params(model.non_trainable_variables)
    emit(f"Total params: {trainable + frozen:,}")
    emit(f"Trainable params: {trainable:,}")
    emit(f"Non-trainable params: {frozen:,}")
    emit("_" * total_width)
