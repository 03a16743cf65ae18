"""Reading an ``.onnx`` model: bounded, checked, normalised to :data:`TARGET_OPSET`, and turned into a spec."""

from __future__ import annotations

import math
import os
import re
from typing import Any

from hubkit.errors import FormatError, HubkitError

__all__ = ["MAX_MODEL_BYTES", "MAX_NODES", "TARGET_OPSET", "external_data_info", "load_spec", "read_model",
           "require_onnx"]

# Every model is converted to this opset of the default domain before translation, so each translator
# knows one set of semantics (e.g. Softmax before opset 13 flattened to 2-D around its axis).
TARGET_OPSET = 21
# A ModelProto is one protobuf message, which protobuf caps at 2 GiB; larger weights live in external data.
MAX_MODEL_BYTES = 2 * 1024**3 - 1
# onnx's version converter holds about 3 KB per node (a few bytes each in the file): bound the count, as the
# TF1 importer does, so a small file cannot ask for hundreds of gigabytes.
MAX_NODES = 2_000_000
_DEFAULT_DOMAINS = ("", "ai.onnx")


class MissingExtraError(HubkitError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require_onnx() -> Any:
    """Imports and returns the ``onnx`` package, or says which extra to install."""
    try:
        import onnx
        import onnx.checker
        import onnx.shape_inference
        import onnx.version_converter
    except ImportError:
        raise MissingExtraError(
            "Reading and writing ONNX models needs the 'onnx' package: pip install 'hubkit-ml[onnx]'."
        ) from None
    return onnx


def model_file(path: str) -> str:
    """The ``.onnx`` file at ``path`` (itself, or the only one in the directory ``path``)."""
    if os.path.isdir(path):
        found = sorted(n for n in os.listdir(path) if n.endswith(".onnx"))
        if len(found) != 1:
            raise FormatError(f"{path!r} must hold exactly one '.onnx' model; it holds {found}.")
        return os.path.join(path, found[0])
    return path


# Bytes per element of the fixed-size ONNX element types (TensorProto.DataType) that external data may hold.
_ITEMSIZES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2}
_EXTERNAL_KEYS = ("location", "offset", "length", "checksum")
_DIGITS = re.compile(r"[0-9]{1,19}")


def _external_number(tensor: Any, key: str, value: str) -> int:
    """A non-negative int64 written in decimal digits (onnx's own parser accepts ``int()``'s whole syntax)."""
    if not _DIGITS.fullmatch(value) or int(value) > 2**63 - 1:
        raise FormatError(
            f"Initializer {tensor.name!r} has the external-data {key} {value[:40]!r}; it must be a non-negative "
            f"int64 in decimal digits."
        )
    return int(value)


def external_data_info(tensor: Any) -> tuple[str, int, int | None]:
    """``(location, offset, length or None)`` of an external-data tensor, parsed strictly.

    Raises:
        FormatError: a key given twice, a missing location, an offset or length that is not a non-negative int64.
    """
    fields: dict[str, str] = {}
    for entry in tensor.external_data:
        if entry.key in fields:
            raise FormatError(f"Initializer {tensor.name!r} gives the external-data key {entry.key!r} twice.")
        if entry.key in _EXTERNAL_KEYS:  # onnx ignores other keys with a warning: so does hubkit, silently
            fields[entry.key] = entry.value
    location = fields.get("location", "")
    offset = _external_number(tensor, "offset", fields["offset"]) if "offset" in fields else 0
    length = _external_number(tensor, "length", fields["length"]) if "length" in fields else None
    return location, offset, length


def _check_external_data(model: Any, base: str) -> None:
    """External-data files must be plain files inside the model's directory, and hold the bytes they claim.

    Each external initializer's entries are then rewritten canonically (location, offset, and a length of
    exactly ``prod(dims) * itemsize`` bytes), so onnx's own readers never see a value hubkit did not check.
    """
    from onnx.external_data_helper import uses_external_data

    root = os.path.realpath(base)
    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        loc, offset, length = external_data_info(tensor)
        target = os.path.realpath(os.path.join(root, loc)) if loc and "\0" not in loc else ""
        inside = bool(target) and not os.path.isabs(loc) and os.path.commonpath([root, target]) == root
        if not inside or not os.path.isfile(target):
            raise FormatError(
                f"Initializer {tensor.name!r} keeps its data in {loc[:200]!r}, which is not a file inside the model "
                f"directory {base!r}."
            )
        itemsize = _ITEMSIZES.get(tensor.data_type)
        if itemsize is None:
            raise FormatError(
                f"Initializer {tensor.name!r} keeps data of ONNX element type {tensor.data_type} in an external "
                f"file; only fixed-size numeric types can be external."
            )
        if any(d < 0 for d in tensor.dims):
            raise FormatError(f"Initializer {tensor.name!r} has the negative dimensions {list(tensor.dims)[:8]}.")
        nbytes = math.prod(int(d) for d in tensor.dims) * itemsize  # Python ints: no int64 wrap-around
        size = os.path.getsize(target)
        if length is not None and length != nbytes:
            raise FormatError(
                f"Initializer {tensor.name!r} claims {length} bytes of external data, but its shape "
                f"{list(tensor.dims)[:8]} of {itemsize}-byte elements needs {nbytes}."
            )
        if offset > size or nbytes > size - offset:
            raise FormatError(
                f"Initializer {tensor.name!r} needs bytes {offset}..{offset + nbytes} of {loc!r} (shape "
                f"{list(tensor.dims)[:8]}), which holds {size} bytes."
            )
        del tensor.external_data[:]
        for key, value in (("location", loc), ("offset", str(offset)), ("length", str(nbytes))):
            tensor.external_data.add(key=key, value=value)


def _refuse_other_external_data(model: Any) -> None:
    """Only initializers may keep data in external files: a tensor in a node attribute (``Constant``'s value,
    a subgraph's initializer) would be read relative to the working directory, and sparse ones are not checked."""
    from onnx import AttributeProto, TensorProto

    def external(t: Any) -> bool:
        return t.data_location == TensorProto.EXTERNAL or len(t.external_data) > 0

    graphs = [(model.graph, True)]
    while graphs:
        graph, top = graphs.pop()
        tensors = [] if top else [(t, "an initializer of a subgraph") for t in graph.initializer]
        tensors += [(s.values, "a sparse initializer") for s in graph.sparse_initializer]
        for node in graph.node:
            for a in node.attribute:
                what = f"attribute {a.name!r} of node {node.name!r} ({node.op_type})"
                if a.type == AttributeProto.TENSOR:
                    tensors.append((a.t, what))
                tensors += [(t, what) for t in a.tensors]
                if a.type == AttributeProto.SPARSE_TENSOR:
                    tensors.append((a.sparse_tensor.values, what))
                tensors += [(t.values, what) for t in a.sparse_tensors]
                if a.type == AttributeProto.GRAPH:
                    graphs.append((a.g, False))
                graphs += [(g, False) for g in a.graphs]
        for t, what in tensors:
            if external(t):
                raise FormatError(
                    f"Tensor {t.name!r} of {what} keeps its data in an external file; only the main graph's "
                    f"initializers may."
                )


_INLINE_BYTES = 64 * 1024  # external tensors up to this size (shapes, axes, small vectors) are read into the model


def _inline_small_external_data(model: Any, base: str) -> None:
    """Reads small external tensors into the model, so the checker and shape inference see shape inputs."""
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        _, _, length = external_data_info(tensor)  # canonical since _check_external_data: the exact byte count
        if length is not None and length <= _INLINE_BYTES:
            load_external_data_for_tensor(tensor, base)
            del tensor.external_data[:]
            tensor.data_location = tensor.DEFAULT


def _without_external_data(model: Any) -> Any:
    """A copy whose external-data initializers are typed graph inputs instead (the checker cannot see the
    data files of a model held in memory; their bytes were checked with the original file)."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    external = [t for t in copy.graph.initializer if uses_external_data(t)]
    if not external:
        return copy
    kept = [t for t in copy.graph.initializer if not uses_external_data(t)]
    del copy.graph.initializer[:]
    copy.graph.initializer.extend(kept)
    listed = {i.name for i in copy.graph.input}
    for t in external:
        if t.name not in listed:
            copy.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    copy.ir_version = max(copy.ir_version, 4)
    return copy


def _with_output_shapes(model: Any) -> Any:
    """``model`` (a copy) with an (empty) shape field on every graph input and output that has none: the
    checker requires the field, which the version converter's shape inference used to fill in."""
    for vi in [*model.graph.input, *model.graph.output]:
        if vi.type.HasField("tensor_type") and not vi.type.tensor_type.HasField("shape"):
            vi.type.tensor_type.shape.SetInParent()
    return model


def default_opset(model: Any) -> int:
    versions = [o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS]
    return versions[0] if versions else 1


def read_model(path: str) -> Any:
    """Parses, checks and normalises the model at ``path``; external data stays on disk (not loaded).

    onnx's checker runs before its version converter and its shape inference, all three C++ code: the
    converter and shape inference trust what they read (an opset-1 ``Reshape`` whose ``shape`` attribute
    was an INT instead of INTS crashed the converter with SIGSEGV), the checker is what verifies every
    node's inputs and attributes against the op's schema for the model's own opset.

    Raises:
        FormatError: the file is too large or not a regular file, is not a valid ONNX model, or cannot be
            normalised to :data:`TARGET_OPSET`; external data outside the model's directory or not holding
            the bytes the initializer needs.
    """
    onnx = require_onnx()
    from hubkit.format.bounded_io import read_regular_file

    data = read_regular_file(path, MAX_MODEL_BYTES, "ONNX model")
    try:
        model = onnx.ModelProto.FromString(data)
    except Exception as e:  # DecodeError and friends: protobuf's parser bounds depth and size itself
        raise FormatError(f"ONNX model {path!r} cannot be parsed: {e}.") from None
    del data
    if len(model.graph.node) > MAX_NODES:
        raise FormatError(
            f"ONNX model {path!r} has {len(model.graph.node)} nodes, more than the limit of {MAX_NODES}."
        )
    base = os.path.dirname(os.path.abspath(path))
    _check_external_data(model, base)
    _refuse_other_external_data(model)
    from hubkit.importers.onnx.translate import check_supported

    _inline_small_external_data(model, base)
    check_supported(model, path)  # before conversion: names the ops as the file spells them
    try:  # against the schemas of the model's own opset, before any other C++ code reads the model
        onnx.checker.check_model(_with_output_shapes(_without_external_data(model)))
    except Exception as e:
        raise FormatError(f"ONNX model {path!r} is invalid: {e}") from None
    version = default_opset(model)
    if version != TARGET_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, TARGET_OPSET)
            # The converter keeps the old IR version; IR < 4 wants every initializer it adds listed as an input.
            model.ir_version = max(model.ir_version, onnx.helper.find_min_ir_version_for(list(model.opset_import)))
        except Exception as e:
            raise FormatError(
                f"ONNX model {path!r} uses opset {version}, which cannot be converted to opset {TARGET_OPSET}: {e}"
            ) from None
    try:
        onnx.checker.check_model(_without_external_data(model), full_check=True)
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as e:
        raise FormatError(f"ONNX model {path!r} is invalid: {e}") from None
    check_supported(model, path)
    return model


def load_spec(path: str):
    """Reads the ONNX model at ``path`` (a file or a directory holding one) into a ``ModuleSpec``.

    Raises:
        FormatError: not a valid ONNX model, an unsupported opset or ops (every one named, with its nodes),
            external data outside the model's directory.
        MissingExtraError: the ``onnx`` extra is not installed.
    """
    from hubkit.importers.onnx.build import build_spec

    file = model_file(os.fspath(path))
    model = read_model(file)
    return build_spec(model, os.path.abspath(file))
