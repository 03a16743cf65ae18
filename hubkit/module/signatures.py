"""Signatures: their tensor infos, and how a call's inputs are packed, converted and checked.

Packing follows TensorFlow Hub: a dict is used as given; a single value fills a one-input
signature; anything else is refused with the expected names. Missing and extra keys are both
listed, sorted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hubkit.errors import GraphError, SignatureError
from hubkit.graph import DType, Graph, Shape, Tensor, convert_to_tensor, format_shape
from hubkit.graph.shapes import merge_shapes
from hubkit.graph.values import convert_value

__all__ = [
    "SignatureSpec",
    "TensorInfo",
    "convert_eager_input",
    "convert_eager_inputs",
    "convert_symbolic_input",
    "pack_inputs",
]



class TensorInfo:
    """The dtype and static shape of a signature input or output.

    Attributes:
        dtype: a hubkit DType.
        shape: a tuple with ``None`` for unknown dimensions, or ``None`` for unknown rank.
        name: the tensor's name inside the module graph.
    """

    __slots__ = ("dtype", "name", "shape")

    def __init__(self, name: str, dtype: DType, shape: Shape) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = shape

    def get_shape(self) -> Shape:
        """The static shape (as ``Tensor.get_shape``)."""
        return self.shape

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TensorInfo)
            and (self.name, self.dtype, self.shape) == (other.name, other.dtype, other.shape)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.dtype.name, self.shape))

    def __repr__(self) -> str:
        return f"<hubkit.TensorInfo shape={format_shape(self.shape)} dtype={self.dtype.name}>"


@dataclass(frozen=True)
class SignatureSpec:
    """A named signature: input and output names -> tensor infos (in definition order)."""

    name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]

    def describe(self) -> str:
        """``name(x: float32 [None, 3]) -> {default: float32 [None, 2]}`` for reprs and errors."""
        ins = ", ".join(f"{k}: {v.dtype.name} {format_shape(v.shape)}" for k, v in self.inputs.items())
        outs = ", ".join(f"{k}: {v.dtype.name} {format_shape(v.shape)}" for k, v in self.outputs.items())
        return f"{self.name}({ins}) -> {{{outs}}}"


def pack_inputs(sig: SignatureSpec, inputs: Any) -> dict[str, Any]:
    """Turns a call's ``inputs`` into a dict keyed by the signature's input names.

    Raises:
        SignatureError: the inputs cannot be matched to the signature; missing and extra keys are
            listed, sorted.
    """
    expected = sig.inputs
    if isinstance(inputs, Mapping):
        given = dict(inputs)
    elif inputs is None and not expected:
        return {}
    elif len(expected) == 1:
        if inputs is None:
            raise SignatureError(
                f"Signature {sig.name!r} expects the input {next(iter(expected))!r}; the call gave none."
            )
        return {next(iter(expected)): inputs}
    elif not expected:
        raise SignatureError(f"Signature {sig.name!r} takes no inputs, but the call gave {type(inputs).__name__}.")
    else:
        raise SignatureError(
            f"Signature {sig.name!r} expects several inputs {sorted(expected)}; pass them as a dict keyed by name."
        )
    missing = sorted(set(expected) - set(given))
    extra = sorted(str(k) for k in set(given) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        raise SignatureError(
            f"Signature {sig.name!r} was called with the wrong inputs ({'; '.join(parts)}); "
            f"expected {sorted(expected)}."
        )
    return given


def convert_eager_input(sig: SignatureSpec, key: str, value: Any) -> np.ndarray:
    """Converts a concrete value to the input's dtype and checks it against the declared shape."""
    info = sig.inputs[key]
    if isinstance(value, (str, bytes)) and info.shape is not None and len(info.shape) >= 1:
        raise SignatureError(
            f"Signature {sig.name!r} input {key!r} takes a batch of strings (shape {format_shape(info.shape)}), "
            f"but was given a bare string; pass a list, e.g. [{value[:40]!r}]."
        )
    try:
        return convert_value(value, info.dtype, info.shape, f"Signature {sig.name!r} input {key!r}", SignatureError)
    except SignatureError as exc:
        if _is_one_example(value, info.shape):
            raise SignatureError(f"{exc} It takes a batch: pass [x] (or x[np.newaxis]) for one example.") from None
        raise


def _is_one_example(value: Any, shape: Any) -> bool:
    """Whether ``value`` would fit ``shape`` = ``[None, ...]`` with a leading batch dimension added."""
    if shape is None or len(shape) < 1 or shape[0] is not None:
        return False
    try:
        given = np.shape(value)
    except (ValueError, TypeError):
        return False
    rest = tuple(shape[1:])
    return len(given) == len(rest) and all(d is None or d == g for d, g in zip(rest, given))


def convert_eager_inputs(sig: SignatureSpec, keys: Sequence[str], packed: dict[str, Any]) -> list[np.ndarray]:
    """Converts every input of a call (see :func:`convert_eager_input`), then checks their batch sizes agree.

    The first dimension of an input declared with an unknown first dimension is the batch: two such
    inputs of different lengths are refused before anything runs, naming the signature, the inputs and
    their shapes (instead of a broadcasting error from deep inside the plan).
    """
    arrays = [convert_eager_input(sig, k, packed[k]) for k in keys]
    batched = [
        (k, a.shape) for k, a in zip(keys, arrays)
        if a.ndim >= 1 and sig.inputs[k].shape and sig.inputs[k].shape[0] is None  # type: ignore[index]
        and not getattr(sig.inputs[k], "is_sparse", False)
    ]
    if len({shape[0] for _, shape in batched}) > 1:
        shapes = ", ".join(f"{k!r} has shape {format_shape(tuple(shape))}" for k, shape in sorted(batched))
        raise SignatureError(
            f"Signature {sig.name!r} was called with inputs whose batch sizes (first dimensions) disagree: "
            f"{shapes}; give every input the same number of rows."
        )
    return arrays


def convert_symbolic_input(sig: SignatureSpec, key: str, value: Any, graph: Graph) -> Tensor:
    """Returns ``value`` as a tensor of ``graph`` fitting the input's dtype and declared shape."""
    info = sig.inputs[key]
    if isinstance(value, Tensor) or hasattr(value, "_as_graph_tensor"):
        try:
            t = convert_to_tensor(value, graph=graph)
        except GraphError as e:
            raise SignatureError(f"Signature {sig.name!r} input {key!r}: {e}") from None
        if t.dtype is not info.dtype:
            raise SignatureError(
                f"Signature {sig.name!r} input {key!r} has dtype {info.dtype.name}; the tensor {t.name!r} has dtype "
                f"{t.dtype.name}."
            )
    else:
        arr = convert_eager_input(sig, key, value)
        with graph.as_default():
            t = convert_to_tensor(arr, dtype=info.dtype, graph=graph)
    if merge_shapes(info.shape, t.shape) is False:
        raise SignatureError(
            f"Signature {sig.name!r} input {key!r} has shape {format_shape(info.shape)}; the tensor {t.name!r} has "
            f"shape {format_shape(t.shape)}."
        )
    return t
