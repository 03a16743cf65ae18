"""The TF1 Hub module importer: ``tfhub_module.pb`` + ``saved_model.pb`` + ``variables/`` + ``assets/``.

:func:`load_spec` reads a module directory into a hubkit :class:`~hubkit.module.spec.ModuleSpec`: each
``MetaGraphDef`` (one per tag set) becomes a graph variant whose TF nodes are translated onto hubkit ops
(see :mod:`.translate`), the tensor bundle's numeric values are memory-mapped from its data shards,
string variables become constants, and assets resolve inside ``assets/`` only. Nothing from the module
is executed; every parser is bounded and every failure is a :class:`~hubkit.errors.FormatError`
naming the file.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from google.protobuf.message import DecodeError

from hubkit.errors import FormatError, SignatureError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.attrs import encode_shape
from hubkit.format.bounded_io import read_regular_file
from hubkit.format.safetensors_io import TensorEntry
from hubkit.graph import DType, format_shape
from hubkit.importers.tf1.attrs import TensorBudget
from hubkit.importers.tf1.bundle import INDEX_FILE, Bundle, read_bundle
from hubkit.importers.tf1.dtypes import hubkit_dtype, numpy_dtype
from hubkit.importers.tf1.graph import GraphTranslator, VariableInfo
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
from hubkit.importers.tf1.translate import supported_tf_ops

__all__ = ["TF1ModuleSpec", "load_spec", "supported_tf_ops"]

MODULE_DEF_FILE = "tfhub_module.pb"
SAVED_MODEL_FILE = "saved_model.pb"
MAX_SAVED_MODEL_BYTES = 1 << 31  # protobuf's own limit for one message


class TF1ModuleSpec:
    """Marker base; see :func:`load_spec` (the spec class is made lazily to keep imports light)."""


@functools.lru_cache(maxsize=1)
def _spec_class():
    from hubkit.module.spec import ModuleSpec

    class _TF1ModuleSpec(ModuleSpec, TF1ModuleSpec):
        """A ModuleSpec read from a TF1 Hub module: TF1 attachments are untyped bytes parsed with the caller's type."""

        def get_attached_message(self, key: str, message_type: Any, tags: Any = None, required: bool = False):
            packed = self._variant(tags).attachments.get(key)
            if packed is not None:  # every TF1 attachment is untyped bytes, image_module_info included
                message = message_type()
                try:
                    message.ParseFromString(packed.value)
                except DecodeError:
                    raise SignatureError(
                        f"Attached message {key!r} does not parse as a {message.DESCRIPTOR.full_name!r}."
                    ) from None
                return message
            return super().get_attached_message(key, message_type, tags=tags, required=required)

    return _TF1ModuleSpec


def _read_proto(path: str, message_type: Any, what: str) -> Any:
    try:
        size = os.path.getsize(path)
        if size > MAX_SAVED_MODEL_BYTES:
            raise FormatError(f"{what} {path!r} is larger than {MAX_SAVED_MODEL_BYTES} bytes.")
        data = read_regular_file(path, MAX_SAVED_MODEL_BYTES, what)  # never a FIFO or device (a hang)
    except OSError as e:
        raise FormatError(f"{what} {path!r} cannot be read: {e.strerror or e}.") from None
    try:
        return message_type.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise FormatError(f"{what} {path!r} is corrupt: it is not a valid {message_type.DESCRIPTOR.name} ({e}).") from None


def _check_module_def(directory: str) -> None:
    path = os.path.join(directory, MODULE_DEF_FILE)
    if not os.path.exists(path):
        return  # a plain TF1 SavedModel: read the same way
    module_def = _read_proto(path, tfpb.ModuleDef, "TF1 Hub marker")
    if module_def.format != 3:
        raise FormatError(f"TF1 Hub marker {path!r} has format {module_def.format}; hubkit reads format 3.")
    if module_def.required_features:
        raise FormatError(f"TF1 Hub marker {path!r} requires the features {sorted(module_def.required_features)}, "
                          "which hubkit does not know.")


class _Variables:
    """Finds each TF variable's stored value in the bundle (once per variable, shared by the variants)."""

    def __init__(self, directory: str) -> None:
        self.dir = os.path.join(directory, "variables")
        self._bundle: Bundle | None = None
        self.infos: dict[str, VariableInfo] = {}

    @property
    def bundle(self) -> Bundle:
        if self._bundle is None:
            if not os.path.isfile(os.path.join(self.dir, INDEX_FILE)):
                raise FormatError(f"TF1 module variables {os.path.join(self.dir, INDEX_FILE)!r} are missing.")
            self._bundle = read_bundle(self.dir)
        return self._bundle

    def resolve(self, name: str, op: str, attrs: dict, var_def: Any, trainable: bool) -> VariableInfo:
        where = f"TF1 variable {name!r}"
        dtype_value = attrs.get("dtype")
        if not isinstance(dtype_value, DType):
            raise FormatError(f"{where} has the dtype {dtype_value!r}, which hubkit variables cannot hold.")
        shape = attrs.get("shape")
        if shape is None or any(d is None for d in shape):
            raise FormatError(f"{where} has the incomplete shape {format_shape(shape)}.")
        shape = tuple(shape)
        key = name
        if op == "VarHandleOp" and attrs.get("shared_name"):
            key = str(attrs["shared_name"])
        bundle = self.bundle
        sl = None
        if var_def is not None and var_def.HasField("save_slice_info_def"):
            info = var_def.save_slice_info_def
            full = tuple(info.full_shape)
            extents = tuple(zip(info.var_offset, info.var_shape))
            entry = None
            for ext in (extents, tuple((o, -1 if (o == 0 and n == f) else n) for (o, n), f in zip(extents, full))):
                entry = bundle.slices.get((info.full_name, tuple((int(a), int(b)) for a, b in ext)))
                if entry is not None:
                    break
            key, sl = info.full_name, extents
        else:
            entry = bundle.entries.get(key)
        if entry is None:
            raise FormatError(f"Tensor bundle {bundle.directory!r} has no value for the variable {name!r} (key "
                              f"{key!r}{', slice ' + str(list(sl)) if sl else ''}).")
        if tuple(entry.shape) != shape or (dtype_value.name != "string" and
                                           numpy_dtype(entry.dtype) != dtype_value.np_dtype):
            raise FormatError(f"Tensor bundle {bundle.directory!r} stores {key!r} as {list(entry.shape)}, but the "
                              f"graph declares the variable {name!r} as {dtype_value.name} {list(shape)}.")
        const = None
        if dtype_value.name == "string":
            const = bundle.read_strings(entry)
        hubkit_dtype(entry.dtype, where)
        info_out = VariableInfo(name, dtype_value, shape, trainable, key, sl, const)
        prior = self.infos.get(name)
        if prior is not None and (prior.dtype is not info_out.dtype or prior.shape != info_out.shape):
            raise FormatError(f"{where} differs between graph variants.")
        self.infos[name] = info_out
        return info_out

    def entry(self, info: VariableInfo) -> TensorEntry:
        bundle = self.bundle
        if info.slice is not None:
            for (full, ext), e in bundle.slices.items():
                if full == info.store_key and all(a == o and (b == n or b == -1) for (a, b), (o, n) in
                                                  zip(ext, info.slice)):
                    return bundle.tensor_entry(e)
        return bundle.tensor_entry(bundle.entries[info.store_key])


def load_spec(path: str) -> Any:
    """Reads the TF1 Hub module (or TF1 SavedModel) directory at ``path`` into a ModuleSpec.

    Raises:
        FormatError: naming the file and the problem: an unknown marker format or required feature, a
            corrupt ``saved_model.pb``, bundle or vocabulary, a variable without a stored value, an asset
            outside ``assets/``, or TF ops hubkit does not support (all of them, with their nodes, in one error).
    """
    from hubkit.module.assets import resolve_asset

    directory = os.path.abspath(os.fspath(path))
    _check_module_def(directory)
    saved_model_path = os.path.join(directory, SAVED_MODEL_FILE)
    saved_model = _read_proto(saved_model_path, tfpb.SavedModel, "TF1 SavedModel")
    if not saved_model.meta_graphs:
        raise FormatError(f"TF1 SavedModel {saved_model_path!r} has no graph.")
    variables = _Variables(directory)
    budget = TensorBudget(saved_model.ByteSize())  # every attribute tensor of every variant counts against it
    collected: dict[str, VariableInfo] = {}
    asset_sources: dict[str, str] = {}
    module_graph = pb.ModuleGraph()
    seen_tags: set[frozenset[str]] = set()
    for mg in saved_model.meta_graphs:
        tags = frozenset(mg.meta_info_def.tags)
        shown = "{" + ", ".join(repr(t) for t in sorted(tags)) + "}" if tags else "set()"
        where = f"TF1 SavedModel {saved_model_path!r} (variant {shown})"
        if tags in seen_tags:
            raise FormatError(f"{where} appears twice.")
        seen_tags.add(tags)

        def asset(filename: str, where: str = where) -> str:
            source = resolve_asset(directory, filename, where)
            asset_sources[filename] = source
            return source

        translator = GraphTranslator(mg, where, collected, variables.resolve, asset, budget)
        module_graph.variants.append(translator.translate())
    store_entries = {}
    for name in sorted(collected):
        info = collected[name]
        vd = module_graph.variables.add(name=name, dtype=info.dtype.name, trainable=info.trainable)
        encode_shape(info.shape, vd.shape)
        store_entries[name] = variables.entry(info)
    where = f"TF1 module {directory!r}"
    return _spec_class()(module_graph, where=where, module_dir=directory, asset_sources=asset_sources,
                         store_entries=store_entries)


