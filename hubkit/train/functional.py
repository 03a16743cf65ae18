"""The functional API's pieces: ``Input``, ``InputLayer``, and tracing a model's layer calls.

Every call of a layer on symbolic tensors is recorded (``CallRecord``: layer, inputs, outputs).
:func:`trace` walks those records back from a model's outputs to its inputs and returns the calls
in an order that can be replayed on new tensors.
"""

from __future__ import annotations

from typing import Any

from hubkit.errors import GraphError
from hubkit.graph import Tensor, as_dtype, placeholder
from hubkit.layers.base import Layer, register_layer
from hubkit.layers.recording import CallRecord, layer_history

__all__ = ["Input", "InputLayer", "trace"]


@register_layer
class InputLayer(Layer):
    """The layer behind :func:`Input`: a placeholder with an implied batch dimension.

    Args:
        shape: the shape of one example (no batch dimension); None entries are any size.
        dtype: element type.
        name: the layer's (and placeholder's) name.
        tensor: wrap an existing placeholder instead of creating one.
    """

    def __init__(
        self, shape: Any = None, dtype: Any = "float32", name: str | None = None, tensor: Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("trainable", None)
        super().__init__(name=name or _input_name(), dtype=None, **kwargs)
        if tensor is None:
            if shape is None:
                raise GraphError("Input needs a shape (without the batch dimension), e.g. Input(shape=(784,)).")
            example = (shape,) if isinstance(shape, int) else tuple(shape)
            tensor = placeholder(as_dtype(dtype), (None, *example), name=self.name)
        self.input_dtype = tensor.dtype
        self.built = True
        self._record_tensor(tensor)

    def _record_tensor(self, tensor: Tensor) -> None:
        record = CallRecord(self, [], {}, tensor)
        self._inbound.append(record)
        layer_history(tensor.graph)[tensor] = (record, 0)

    @property
    def example_shape(self) -> tuple:
        t = self._inbound[0].outputs
        return tuple(t.shape[1:]) if t.shape is not None else ()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.example_shape), "dtype": self.input_dtype.name}


def _input_name() -> str:
    from hubkit.layers.base import unique_layer_name

    return unique_layer_name("input")


def Input(shape: Any, dtype: Any = "float32", name: str | None = None) -> Tensor:
    """A symbolic model input: a placeholder whose first (batch) dimension is implied.

    Args:
        shape: the shape of one example, e.g. ``(784,)`` or ``(None,)`` for variable-length sequences.
        dtype: element type (float32 by default).
        name: the input's name (``"input"``, ``"input_1"``... when None); ``fit`` and ``predict``
            accept dicts keyed by it.

    Returns:
        A placeholder tensor of shape ``(None, *shape)`` in the default graph.

    >>> import hubkit as hk
    >>> with hk.Graph().as_default():
    ...     hk.Input((784,), name="pixels").shape
    (None, 784)
    """
    return InputLayer(shape, dtype, name)._inbound[0].outputs


def input_layer_of(tensor: Tensor) -> InputLayer:
    """The InputLayer that made ``tensor``; a plain placeholder gets one wrapping it."""
    entry = layer_history(tensor.graph).get(tensor)
    if entry is not None and isinstance(entry[0].layer, InputLayer):
        return entry[0].layer
    if entry is not None:
        raise GraphError(
            f"Model input {tensor.name!r} is the output of layer {entry[0].layer.name!r}; model inputs must come "
            "from hubkit.Input (or be placeholders)."
        )
    if tensor.node.op != "Placeholder":
        raise GraphError(f"Model input {tensor.name!r} is not a placeholder; create inputs with hubkit.Input.")
    return InputLayer(name=tensor.node.name, tensor=tensor)


def trace(inputs: list[Tensor], outputs: list[Tensor]) -> list[CallRecord]:
    """The layer calls leading from ``inputs`` to ``outputs``, in an order fit for replaying.

    Raises:
        GraphError: an output depends on a tensor that no layer produced from the inputs (a raw op
            applied outside a layer, or another model input).
    """
    if not outputs:
        raise GraphError("A model needs at least one output.")
    graph = outputs[0].graph
    history = layer_history(graph)
    known = set(inputs)
    order: list[CallRecord] = []
    done: set[int] = set()
    active: set[int] = set()
    input_names = sorted(t.name for t in inputs)

    def visit(t: Any) -> None:
        if not isinstance(t, Tensor):
            raise GraphError(f"Model outputs and layer inputs must be tensors, got {t!r}.")
        if t.graph is not graph:
            raise GraphError(f"Tensor {t.name!r} belongs to another graph than the model's outputs.")
        if t in known:
            return
        entry = history.get(t)
        if entry is None:
            raise GraphError(
                f"Tensor {t.name!r} was not produced by a layer, so the model cannot replay it; build models "
                f"from layers only (wrap other ops in a Layer subclass). Model inputs: {input_names}."
            )
        record = entry[0]
        if isinstance(record.layer, InputLayer):
            raise GraphError(
                f"The model's outputs depend on input {t.name!r}, which is not among its inputs {input_names}."
            )
        if id(record) in done:
            return
        if id(record) in active:
            raise GraphError(f"Layer calls form a cycle at layer {record.layer.name!r}.")
        active.add(id(record))
        for x in record.flat_inputs:
            visit(x)
        active.discard(id(record))
        done.add(id(record))
        order.append(record)

    for out in outputs:
        visit(out)
    return order
