"""Reading an ``.onnx`` model: bounded, checked, normalised to :data:`TARGET_OPSET`, and turned into a spec."""

from __future__ import annotations

import os
from typing import Any

from hubkit.errors import FormatError, HubkitError

__all__ = ["MAX_MODEL_BYTES", "TARGET_OPSET", "load_spec", "read_model", "require_onnx"]

# Every model is converted to this opset of the default domain before translation, so each translator
# knows one set of semantics (e.g. Softmax before opset 13 flattened to 2-D around its axis).
TARGET_OPSET = 21
# A ModelProto is one protobuf message, which protobuf caps at 2 GiB; larger weights live in external data.
MAX_MODEL_BYTES = 2 * 1024**3 - 1
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


def _check_external_data(model: Any, base: str) -> None:
    """External-data files must be plain files inside the model's directory, and hold the bytes they claim."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    root = os.path.realpath(base)
    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        loc = info.location or ""
        target = os.path.realpath(os.path.join(root, loc))
        if not loc or os.path.isabs(loc) or os.path.commonpath([root, target]) != root or not os.path.isfile(target):
            raise FormatError(
                f"Initializer {tensor.name!r} keeps its data in {loc!r}, which is not a file inside the model "
                f"directory {base!r}."
            )
        size = os.path.getsize(target)
        offset = int(info.offset or 0)
        length = info.length
        if offset < 0 or offset > size or (length is not None and (length < 0 or offset + int(length) > size)):
            raise FormatError(
                f"Initializer {tensor.name!r} claims bytes {offset}..{offset + int(length or 0)} of {loc!r}, "
                f"which holds {size} bytes."
            )


_INLINE_BYTES = 64 * 1024  # external tensors up to this size (shapes, axes, small vectors) are read into the model


def _inline_small_external_data(model: Any, base: str) -> None:
    """Reads small external tensors into the model, so the checker and shape inference see shape inputs."""
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_tensor, uses_external_data

    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        length = int(info.length) if info.length is not None else os.path.getsize(os.path.join(base, info.location))
        if length <= _INLINE_BYTES:
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


def default_opset(model: Any) -> int:
    versions = [o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS]
    return versions[0] if versions else 1


def read_model(path: str) -> Any:
    """Parses, checks and normalises the model at ``path``; external data stays on disk (not loaded).

    Raises:
        FormatError: the file is too large, is not a valid ONNX model, or cannot be normalised to
            :data:`TARGET_OPSET`; external data outside the model's directory.
    """
    onnx = require_onnx()
    size = os.path.getsize(path)
    if size > MAX_MODEL_BYTES:
        raise FormatError(f"ONNX model {path!r} is {size} bytes; a model file holds at most {MAX_MODEL_BYTES}.")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # DecodeError and friends: protobuf's parser bounds depth and size itself
        raise FormatError(f"ONNX model {path!r} cannot be parsed: {e}.") from None
    _check_external_data(model, os.path.dirname(os.path.abspath(path)))
    from hubkit.importers.onnx.translate import check_supported

    _inline_small_external_data(model, os.path.dirname(os.path.abspath(path)))
    check_supported(model, path)  # before conversion: names the ops as the file spells them
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
