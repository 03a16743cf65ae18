"""Recording of layer calls on symbolic tensors: the topology the functional API (``Model``) replays.

Each call of a layer on tensors, outside another layer's call, appends a :class:`CallRecord` and maps
its output tensors back to it in the graph's layer state; nested calls (a layer inside a layer) are
not recorded. Also the small structure helpers every layer uses (``flatten``, ``map_structure``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hubkit.graph import Graph, Tensor

if TYPE_CHECKING:
    from hubkit.layers.base import Layer

__all__ = ["CallRecord", "flatten", "layer_history", "map_structure", "recorded_graph_state", "suppress_recording"]


# -- recording of calls (the functional API's topology) ---------------------------------------------
class _CallState(threading.local):
    def __init__(self) -> None:
        self.depth = 0  # > 0 inside a layer's call: nested calls are not recorded
        self.scopes: list[str] = []  # names of the layers being built, for variable names


_call_state = _CallState()


@contextlib.contextmanager
def suppress_recording() -> Iterator[None]:
    """Layer calls inside this block are not recorded as functional-model connections."""
    _call_state.depth += 1
    try:
        yield
    finally:
        _call_state.depth -= 1


class CallRecord:
    """One call of a layer on symbolic tensors (a Keras "node").

    Attributes:
        layer: the layer called.
        inputs: the inputs as passed (a tensor, or a list/tuple/dict of tensors).
        kwargs: the plain-data keyword arguments of the call (e.g. ``training=True``).
        outputs: the outputs as returned.
    """

    __slots__ = ("inputs", "kwargs", "layer", "outputs")

    def __init__(self, layer: Layer, inputs: Any, kwargs: dict[str, Any], outputs: Any) -> None:
        self.layer = layer
        self.inputs = inputs
        self.kwargs = kwargs
        self.outputs = outputs

    @property
    def flat_inputs(self) -> list[Tensor]:
        return flatten(self.inputs)

    @property
    def flat_outputs(self) -> list[Tensor]:
        return flatten(self.outputs)


class _LayerGraphState:
    """Per-graph state of the layers: recorded calls, and the weights whose regularization loss was added."""

    def __init__(self) -> None:
        self.history: dict[Tensor, tuple[CallRecord, int]] = {}
        self.regularized: set[int] = set()


def recorded_graph_state(graph: Graph) -> _LayerGraphState:
    """The layers' per-graph state of ``graph``."""
    return graph.state_for(_LayerGraphState)


def layer_history(graph: Graph) -> dict[Tensor, tuple[CallRecord, int]]:
    """``tensor -> (record, index in the record's flat outputs)`` for every recorded call in ``graph``."""
    return graph.state_for(_LayerGraphState).history


def flatten(structure: Any) -> list[Any]:
    """The leaves of a tensor, list, tuple or dict (dicts in insertion order)."""
    if isinstance(structure, dict):
        return [leaf for v in structure.values() for leaf in flatten(v)]
    if isinstance(structure, (list, tuple)):
        return [leaf for v in structure for leaf in flatten(v)]
    return [structure]


def map_structure(fn: Any, structure: Any) -> Any:
    """Applies ``fn`` to every leaf, keeping the list/tuple/dict structure."""
    if isinstance(structure, dict):
        return {k: map_structure(fn, v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(map_structure(fn, v) for v in structure)
    return fn(structure)
