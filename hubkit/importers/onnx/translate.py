"""Translating ONNX nodes: the context every translator works in, constant folding, the support check."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hubkit.errors import FormatError, GraphError, HubkitError
from hubkit.graph import (
    DType,
    Graph,
    Tensor,
    bool_,
    constant,
    float32,
    float64,
    get_default_graph,
    int32,
    int64,
)
from hubkit.importers.onnx import ops_math, ops_nn, ops_shape  # noqa: F401  (register the translators)
from hubkit.importers.onnx.registry import TRANSLATORS
from hubkit.ops._helpers import MAX_OUTPUT_ELEMENTS
from hubkit.ops.registry import get_op

__all__ = ["SUPPORTED_OPS", "Context", "check_fold_size", "check_supported", "onnx_dtype"]

SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(TRANSLATORS))

# ONNX TensorProto.DataType -> hubkit dtype (the dtypes hubkit computes with).
_DTYPES: dict[int, DType] = {1: float32, 6: int32, 7: int64, 9: bool_, 11: float64}
_DTYPE_NAMES = {1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "STRING",
                9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 16: "BFLOAT16"}
_MAX_FOLD_ELEMENTS = 1 << 24  # folding a larger constant would bloat graph.pb: keep it as graph ops


def onnx_dtype(code: int, what: str) -> DType:
    """The hubkit dtype of ONNX element type ``code``."""
    try:
        return _DTYPES[code]
    except KeyError:
        name = _DTYPE_NAMES.get(code, str(code))
        raise FormatError(
            f"{what} has the ONNX element type {name}, which hubkit does not compute with; supported: "
            f"{sorted(_DTYPE_NAMES[c] for c in _DTYPES)}."
        ) from None


def check_supported(model: Any, path: str) -> None:
    """Refuses, in one error, every node whose op type (or domain) has no translator."""
    unsupported: dict[str, list[str]] = {}
    for i, node in enumerate(model.graph.node):
        domain = node.domain or ""
        key = node.op_type if domain in ("", "ai.onnx") else f"{domain}.{node.op_type}"
        if key not in TRANSLATORS:
            unsupported.setdefault(key, []).append(node.name or f"#{i}")
    if unsupported:
        listing = "; ".join(f"{op} (nodes {nodes[:10]}{' ...' if len(nodes) > 10 else ''})"
                            for op, nodes in sorted(unsupported.items()))
        raise FormatError(
            f"ONNX model {path!r} uses {len(unsupported)} op type(s) hubkit cannot import: {listing}. "
            f"Supported op types: see docs/onnx.md."
        )


def check_fold_size(elements: int, what: str) -> None:
    """Refuses to compute, at import, a constant larger than :data:`_MAX_FOLD_ELEMENTS` elements."""
    if elements > _MAX_FOLD_ELEMENTS:
        raise GraphError(
            f"{what} would compute a constant of {elements} elements at import; the limit is {_MAX_FOLD_ELEMENTS}."
        )


def evaluate(tensors: Sequence[Tensor]) -> list[np.ndarray]:
    """Runs the (constant-only) subgraph computing ``tensors`` with the ops' own kernels."""
    memo: dict[str, tuple] = {}

    def value(t: Tensor) -> np.ndarray:
        node = t.node
        if node.name not in memo:
            if node.op == "Const":
                memo[node.name] = (node.attrs["value"],)
            else:
                for out in node.outputs:  # a hostile model must not make the importer allocate without bound
                    if out.shape is not None and None not in out.shape:
                        check_fold_size(math.prod(out.shape), node.op)  # Python ints: np.prod wraps
                opdef = get_op(node.op)
                args = [value(i) for i in node.inputs]
                extra = opdef.prepare(node) if opdef.prepare is not None else {}
                out = opdef.forward(*args, **{**node.attrs, **(extra or {})})
                memo[node.name] = out if isinstance(out, tuple) else (out,)
        return np.asarray(memo[node.name][t.index])

    return [value(t) for t in tensors]


class Context:
    """What translators see: the values computed so far and helpers to read them.

    Values are hubkit tensors of the graph being built, or NumPy arrays known at import (constants,
    integer initializers, and whatever was folded from them). Float initializers are variables: tensors,
    whose values :meth:`value` still reads (for inputs ONNX uses as attributes, such as ``Clip``'s bounds).
    """

    def __init__(self, graph: Graph, initializer_values: dict[str, Any]) -> None:
        self.graph = graph
        self.values: dict[str, Tensor | np.ndarray] = {}
        self._initializer_values = initializer_values  # name -> callable giving the array (lazy)
        self._constants: dict[tuple[int, str], Tensor] = {}

    # -- reading inputs ------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return bool(name) and name in self.values

    def t(self, name: str) -> Tensor:
        """Input ``name`` as a tensor of the current default graph (a constant when known at import)."""
        v = self.values[name]
        if isinstance(v, Tensor):
            return v
        g = get_default_graph()
        key = (id(g), name)
        c = self._constants.get(key)
        if c is None:
            c = self._constants[key] = constant(v)
        return c

    def known(self, name: str) -> np.ndarray | None:
        """The value of input ``name`` when it is known at import and not a variable, else None."""
        v = self.values.get(name)
        return v if isinstance(v, np.ndarray) else None

    def value(self, name: str, what: str) -> np.ndarray:
        """The value of input ``name`` (a constant or an initializer); refuses inputs computed at run time."""
        v = self.known(name)
        if v is None and name in self._initializer_values:
            v = np.asarray(self._initializer_values[name]())
        if v is None:
            raise GraphError(f"{what} must be a constant or an initializer; {name!r} is computed at run time.")
        return v

    def shape(self, name: str) -> tuple | None:
        v = self.values[name]
        return tuple(v.shape) if isinstance(v, np.ndarray) else v.shape

    # -- running nodes -------------------------------------------------------------------------
    def run(self, node: Any, attrs: dict[str, Any]) -> None:
        """Translates ``node``; when all its inputs are known at import, computes its outputs now."""
        translator = TRANSLATORS[node.op_type]
        inputs = [n for n in node.input if n]
        known = [self.known(n) for n in inputs]
        if all(v is not None and v.size <= _MAX_FOLD_ELEMENTS for v in known):
            scratch = Graph()
            with scratch.as_default():
                outs = translator(self, node, attrs)
                tensors = [o for o in outs if isinstance(o, Tensor)]
                computed = iter(evaluate(tensors))
                outs = [next(computed) if isinstance(o, Tensor) else o for o in outs]
        else:
            with self.graph.as_default():
                outs = translator(self, node, attrs)
            for out in outs:
                if isinstance(out, Tensor) and out.shape is not None:
                    # a static shape (from constants: Resize scales, Expand shapes, ...) over the ops' run-time
                    # limit is refused at import; unknown dimensions count as 1 (a bound per batch item)
                    elements = math.prod(1 if d is None else d for d in out.shape)
                    if elements > MAX_OUTPUT_ELEMENTS:
                        per = " (unknown dimensions counted as 1)" if None in out.shape else ""
                        raise GraphError(f"the output of static shape {list(out.shape)} would hold {elements} "
                                         f"elements{per}; the limit is {MAX_OUTPUT_ELEMENTS}.")
        for name, out in zip(node.output, outs):
            if name:
                self.values[name] = np.asarray(out) if not isinstance(out, Tensor) else out


def translate_node(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    """Runs one node's translator; any failure names the ONNX node."""
    try:
        ctx.run(node, attrs)
    except HubkitError as e:
        raise FormatError(f"ONNX node {node.name!r} ({node.op_type}) cannot be imported: {e}") from None
    except (ValueError, TypeError, IndexError, KeyError, ArithmeticError, MemoryError) as e:
        # ArithmeticError: ZeroDivisionError, OverflowError (an inf or a 2**63 where numpy wants an int64);
        # MemoryError: an allocation no size check foresaw. Either way the model is what is wrong.
        raise FormatError(
            f"ONNX node {node.name!r} ({node.op_type}) cannot be imported: {type(e).__name__}: {e}"
        ) from None
