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

from hubkit.errors import GraphError, SignatureError, SignatureInputError
from hubkit.graph import DType, Graph, Shape, Tensor, convert_to_tensor, format_shape
from hubkit.graph.shapes import merge_shapes
from hubkit.graph.values import convert_value

__all__ = [
    "SignatureSpec", "TensorInfo", "convert_eager_input", "convert_eager_inputs", "convert_symbolic_input",
    "expand_composites", "group_composite_outputs", "output_keys", "pack_inputs", "public_infos",
]



class TensorInfo:
    """The dtype and static shape of a signature input or output.

    Attributes:
        dtype: a hubkit DType.
        shape: a tuple with ``None`` for unknown dimensions, or ``None`` for unknown rank.
        name: the tensor's name inside the module graph.
        is_sparse: the value is a :class:`hubkit.SparseTensor` (indices, values, dense_shape).
        is_composite: the value is a composite tensor (sparse or :class:`hubkit.RaggedTensor`).
    """

    __slots__ = ("dtype", "is_composite", "is_sparse", "name", "shape")

    def __init__(self, name: str, dtype: DType, shape: Shape, is_sparse: bool = False,
                 is_composite: bool | None = None) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.is_sparse = bool(is_sparse)
        self.is_composite = self.is_sparse if is_composite is None else bool(is_composite)

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
        SignatureInputError: the inputs cannot be matched to the signature; missing and extra keys are
            listed, sorted.
    """
    return split_composite_inputs(sig, _pack_public(sig, inputs))


def _pack_public(sig: SignatureSpec, inputs: Any) -> dict[str, Any]:
    expected = public_infos(sig.inputs)
    if isinstance(inputs, Mapping):
        given = dict(inputs)
    elif inputs is None and not expected:
        return {}
    elif len(expected) == 1:
        if inputs is None:
            raise SignatureInputError(
                f"Signature {sig.name!r} expects the input {next(iter(expected))!r}; the call gave none "
                f"(missing {sorted(expected)})."
            )
        return {next(iter(expected)): inputs}
    elif not expected:
        raise SignatureInputError(f"Signature {sig.name!r} takes no inputs, but the call gave {type(inputs).__name__}.")
    elif inputs is None:
        raise SignatureInputError(f"Signature {sig.name!r} was called without inputs; missing {sorted(expected)}.")
    else:
        raise SignatureInputError(
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
        raise SignatureInputError(
            f"Signature {sig.name!r} was called with the wrong inputs ({'; '.join(parts)}); "
            f"expected {sorted(expected)}."
        )
    return given


def convert_eager_input(sig: SignatureSpec, key: str, value: Any) -> np.ndarray:
    """Converts a concrete value to the input's dtype and checks it against the declared shape."""
    info = sig.inputs[key]
    if isinstance(value, (str, bytes)) and info.shape is not None and len(info.shape) >= 1:
        raise SignatureInputError(
            f"Signature {sig.name!r} input {key!r} takes a batch of strings (shape {format_shape(info.shape)}), "
            f"but was given a bare string; pass a list, e.g. [{value[:40]!r}]."
        )
    try:
        return convert_value(value, info.dtype, info.shape, f"Signature {sig.name!r} input {key!r}", SignatureInputError)
    except SignatureInputError as exc:
        if _is_one_example(value, info.shape):
            raise SignatureInputError(f"{exc} It takes a batch: pass [x] (or x[np.newaxis]) for one example.") from None
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

    The first dimension of an input declared ``[None, ...]`` (rank 2 or more) is the batch: two such
    inputs of different lengths are refused before anything runs, naming the signature, the inputs and
    their shapes (instead of a broadcasting error from deep inside the plan).
    """
    arrays = [convert_eager_input(sig, k, packed[k]) for k in keys]
    # Components of a sparse or ragged input (".../indices", ".../values") have no batch dimension.
    composites = [k for k, info in public_infos(sig.inputs).items() if info.is_composite]
    batched = [
        (k, a.shape) for k, a in zip(keys, arrays)
        # Rank >= 2 only: 1-D inputs of one signature may be of different lengths by design (row splits and values).
        if a.ndim >= 2 and sig.inputs[k].shape and sig.inputs[k].shape[0] is None  # type: ignore[index]
        and not sig.inputs[k].is_composite and not any(k.startswith(c + "/") for c in composites)
    ]
    if len({shape[0] for _, shape in batched}) > 1:
        shapes = ", ".join(f"{k!r} has shape {format_shape(tuple(shape))}" for k, shape in sorted(batched))
        raise SignatureInputError(
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
            raise SignatureInputError(
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


# -- composite (sparse and ragged) signature values ------------------------------------------------------
# A composite input or output "x" is stored as plain entries "x/<component>" (signature keys never
# hold "/"), so the format needs nothing new; these helpers group and split them at the API.
COMPONENTS = {"sparse": ("indices", "values", "dense_shape"), "ragged": ("values", "row_ids", "num_rows")}


def _kind_of(value: Any) -> str | None:
    if hasattr(value, "indices") and hasattr(value, "dense_shape") and hasattr(value, "values"):
        return "sparse"
    if hasattr(value, "row_ids") and hasattr(value, "num_rows") and hasattr(value, "values"):
        return "ragged"
    return None


def expand_composites(entries: dict[str, Any]) -> dict[str, Any]:
    """``{"x": SparseTensor}`` -> ``{"x/indices": ..., "x/values": ..., "x/dense_shape": ...}`` (others kept)."""
    out: dict[str, Any] = {}
    for key, value in entries.items():
        kind = None if isinstance(value, Tensor) else _kind_of(value)
        if kind is None:
            out[key] = value
        else:
            for comp in COMPONENTS[kind]:
                out[f"{key}/{comp}"] = getattr(value, comp)
    return out


def composites(infos: Mapping[str, Any]) -> dict[str, str]:
    """``{base key: "sparse" | "ragged"}`` of the composite entries among ``infos``' keys."""
    groups: dict[str, set[str]] = {}
    for key in infos:
        base, sep, comp = key.partition("/")
        if sep:
            groups.setdefault(base, set()).add(comp)
    out = {}
    for base, comps in groups.items():
        for kind, names in COMPONENTS.items():
            if comps == set(names):
                out[base] = kind
    return out


def public_infos(infos: Mapping[str, TensorInfo]) -> dict[str, TensorInfo]:
    """The signature's entries as users see them: each composite as one TensorInfo (``is_composite``)."""
    groups = composites(infos)
    out: dict[str, TensorInfo] = {}
    for key, info in infos.items():
        base, sep, _ = key.partition("/")
        if not sep or base not in groups:
            out[key] = info
        elif base not in out:
            kind = groups[base]
            values = infos[f"{base}/values"]
            if kind == "sparse":
                rank_shape = infos[f"{base}/dense_shape"].shape
                rank = rank_shape[0] if rank_shape else None
                shape = None if rank is None else (None,) * rank
            else:
                shape = None if values.shape is None else (None, None, *values.shape[1:])
            out[base] = TensorInfo(values.name, values.dtype, shape, is_sparse=kind == "sparse", is_composite=True)
    return out


def split_composite_inputs(sig: SignatureSpec, packed: dict[str, Any]) -> dict[str, Any]:
    """Replaces each composite input's value (symbolic, or its eager value form) by its components."""
    groups = composites(sig.inputs)
    if not groups:
        return packed
    out: dict[str, Any] = {}
    for key, value in packed.items():
        kind = groups.get(key)
        if kind is None:
            out[key] = value
            continue
        if _kind_of(value) == kind and not isinstance(value, tuple):
            parts = [getattr(value, c) for c in COMPONENTS[kind]]
        else:
            parts = _eager_parts(sig, key, kind, value)
        for comp, part in zip(COMPONENTS[kind], parts):
            out[f"{key}/{comp}"] = part
    return out


def _eager_parts(sig: SignatureSpec, key: str, kind: str, value: Any) -> list[Any]:
    from hubkit.errors import FeedError

    what = f"Signature {sig.name!r} input {key!r}"
    try:
        if kind == "sparse":
            from hubkit.ops.sparse_tensor import _check_value

            return list(_check_value(value, what))
        from hubkit.ops.ragged_value import as_ragged_value

        return list(as_ragged_value(value, what))
    except FeedError as e:
        raise SignatureInputError(str(e)) from None


def group_composite_outputs(sig: SignatureSpec, results: dict[str, Any]) -> dict[str, Any]:
    """Regroups component results into SparseTensor(Value)s and RaggedTensor(Value)s, in key order."""
    groups = composites(sig.outputs)
    if not groups:
        return results
    out: dict[str, Any] = {}
    for key, value in results.items():
        base, sep, _ = key.partition("/")
        if not sep or base not in groups:
            out[key] = value
        elif base not in out:
            kind = groups[base]
            parts = [results[f"{base}/{c}"] for c in COMPONENTS[kind]]
            out[base] = _composite(kind, parts, symbolic=isinstance(parts[0], Tensor))
    return out


def _composite(kind: str, parts: list[Any], symbolic: bool) -> Any:
    if kind == "sparse":
        from hubkit.ops.sparse_tensor import SparseTensor, SparseTensorValue

        return SparseTensor(*parts) if symbolic else SparseTensorValue(*parts)
    from hubkit.ops.ragged_value import RaggedTensor, RaggedTensorValue

    return RaggedTensor(*parts) if symbolic else RaggedTensorValue(*parts)


def output_keys(sig: SignatureSpec, as_dict: bool) -> tuple[str, ...]:
    """The flat output keys a call computes: all, or those of the ``default`` output (composite or not)."""
    if as_dict:
        return tuple(sig.outputs)
    if "default" in sig.outputs:
        return ("default",)
    kind = composites(sig.outputs).get("default")
    return tuple(f"default/{c}" for c in COMPONENTS[kind]) if kind else ("default",)
