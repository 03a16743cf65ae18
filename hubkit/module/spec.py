"""``ModuleSpec``: a module's graph variants, signatures, collections, attachments, assets and variables.

A spec always holds the portable protobuf form of the module (what ``graph.pb`` stores) and
decodes it into checked :class:`Variant` objects, whether it was just defined by
``create_module_spec`` or read from disk by ``load_module_spec``: one code path validates both.
Variable *values* are not part of a spec: a defined spec knows initializers (and snapshots of
values it took from modules used inside ``module_fn``), a loaded spec knows where the stored
values are; ``Module(spec)`` makes the values.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import any_pb2

from hubkit.errors import FormatError, MissingAttachmentError, SignatureError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.attrs import decode_dtype, decode_shape
from hubkit.format.graph_codec import decode_nodes, decode_tensor_info
from hubkit.format.safetensors_io import TensorEntry
from hubkit.graph import DType, GraphKeys, format_shape
from hubkit.module.assets import ASSET_FILEPATHS, check_asset_filename
from hubkit.module.signatures import SignatureSpec, TensorInfo, public_infos
from hubkit.ops.importer import NodeSpec, split_tensor_name

__all__ = ["CARRIED_COLLECTIONS", "ModuleSpec", "VariableInfo", "Variant", "normalize_tags"]

# Collections a module carries from its definition to every graph that uses it.
CARRIED_COLLECTIONS = (
    GraphKeys.GLOBAL_VARIABLES,
    GraphKeys.TRAINABLE_VARIABLES,
    GraphKeys.REGULARIZATION_LOSSES,
    GraphKeys.UPDATE_OPS,
    GraphKeys.LOSSES,
    ASSET_FILEPATHS,
)


def normalize_tags(tags: Iterable[str] | str | None) -> frozenset[str]:
    """``None`` -> the empty tag set; a single string is one tag."""
    if tags is None:
        return frozenset()
    if isinstance(tags, str):
        tags = [tags]
    out = frozenset(tags)
    for t in out:
        if not isinstance(t, str) or not t:
            raise SignatureError(f"Tags must be non-empty strings, got {t!r}.")
    return out


def _format_tags(tags: frozenset[str]) -> str:
    return "{" + ", ".join(repr(t) for t in sorted(tags)) + "}" if tags else "set()"


@dataclass(frozen=True)
class VariableInfo:
    """A module variable as declared in the graph: module-relative name, dtype, shape, trainable."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    trainable: bool


@dataclass
class Variant:
    """One graph variant (one tag set), decoded and checked."""

    tags: frozenset[str]
    nodes: list[NodeSpec]
    signatures: dict[str, SignatureSpec]
    collections: dict[str, list[tuple[str, str]]]  # key -> [(kind, name)], kind in node/tensor/variable
    attachments: dict[str, any_pb2.Any]

    def signature(self, name: str | None) -> SignatureSpec:
        name = "default" if name is None else name
        try:
            return self.signatures[name]
        except KeyError:
            raise SignatureError(
                f"Module has no signature {name!r}; available signatures: {sorted(self.signatures)}."
            ) from None


def _decode_signature(sd: pb.SignatureDef, nodes: dict[str, NodeSpec], where: str) -> SignatureSpec:
    where = f"{where} signature {sd.name!r}"
    parts: list[dict[str, TensorInfo]] = [{}, {}]
    for part, infos in zip(parts, (sd.inputs, sd.outputs)):
        for info in infos:
            name, dtype, shape = decode_tensor_info(info, f"{where} {info.key!r}")
            if info.key in part:
                raise FormatError(f"{where} repeats {info.key!r}.")
            node_name, _ = split_tensor_name(name)
            if node_name not in nodes:
                raise FormatError(f"{where}: {info.key!r} names the tensor {name!r}, which is not in the graph.")
            part[info.key] = TensorInfo(name, dtype, shape)
    keys_of: dict[str, str] = {}
    for key, info in parts[0].items():
        node = nodes[split_tensor_name(info.name)[0]]
        if node.op != "Placeholder" or node.attrs.get("dtype") is not info.dtype:
            raise FormatError(f"{where}: input {key!r} is not a {info.dtype.name} placeholder.")
        if info.name in keys_of:
            first, second = sorted((keys_of[info.name], key))
            raise FormatError(f"{where}: inputs {first!r} and {second!r} are the same placeholder {info.name!r}.")
        keys_of[info.name] = key
    return SignatureSpec(sd.name, parts[0], parts[1])


def _decode_variant(
    vp: pb.GraphVariant,
    where: str,
    asset_sources: dict[str, str],
    variables: dict[str, VariableInfo],
) -> Variant:
    tags = frozenset(vp.tags)
    where = f"{where} (variant {_format_tags(tags)})"
    nodes = decode_nodes(vp, where)
    by_name = {n.name: n for n in nodes}
    table = {}
    for ad in vp.assets:
        check_asset_filename(ad.filename, where)
        node = by_name.get(ad.node)
        if node is None or node.op != "AssetPath" or node.attrs.get("filename") != ad.filename:
            raise FormatError(f"{where}: the asset table entry {ad.node!r} -> {ad.filename!r} matches no AssetPath node.")
        if ad.filename not in asset_sources:
            raise FormatError(f"{where}: the asset {ad.filename!r} is not in the module's assets.")
        table[ad.node] = ad.filename
    for i, node in enumerate(nodes):
        if node.op == "AssetPath":
            if node.name not in table:
                raise FormatError(f"{where}: the AssetPath node {node.name!r} is not in the asset table.")
            attrs = {**node.attrs, "source": asset_sources[table[node.name]]}
            nodes[i] = NodeSpec(node.name, node.op, node.inputs, node.control_inputs, attrs)
        elif node.op == "Variable":
            info = variables.get(node.name)
            shape = node.attrs.get("shape") or ()
            if (
                info is None
                or node.attrs.get("dtype") is not info.dtype
                or not isinstance(shape, (list, tuple))  # a damaged graph.pb may hold any value here
                or tuple(shape) != info.shape
            ):
                raise FormatError(f"{where}: the Variable node {node.name!r} does not match the module's variables.")
    signatures = {}
    for sd in vp.signatures:
        if sd.name in signatures:
            raise FormatError(f"{where} repeats the signature {sd.name!r}.")
        signatures[sd.name] = _decode_signature(sd, by_name, where)
    collections: dict[str, list[tuple[str, str]]] = {}
    for cd in vp.collections:
        items = collections.setdefault(cd.key, [])
        for item in cd.items:
            kind = item.WhichOneof("kind")
            name = getattr(item, kind) if kind else ""
            node_name = split_tensor_name(name)[0] if kind == "tensor" else name
            node = by_name.get(node_name)
            if node is None or (kind == "variable" and node.op != "Variable"):
                raise FormatError(f"{where}: collection {cd.key!r} names {name!r}, which is not in the graph.")
            items.append((kind, name))
    attachments = {}
    for at in vp.attachments:
        attachments[at.key] = at.message
    return Variant(tags, nodes, signatures, collections, attachments)


class ModuleSpec:
    """A module's definition: graph variants by tag set, their signatures and attachments, its variables.

    Get one from :func:`hubkit.create_module_spec` or :func:`hubkit.load_module_spec`, and
    instantiate it with :class:`hubkit.Module`.
    """

    def __init__(
        self,
        proto: pb.ModuleGraph,
        *,
        where: str,
        module_dir: str | None = None,
        asset_sources: dict[str, str] | None = None,
        initial_values: dict[str, np.ndarray] | None = None,
        initializers: dict[str, Any] | None = None,
        store_entries: dict[str, TensorEntry] | None = None,
    ) -> None:
        self._proto = proto
        self._where = where
        self._module_dir = module_dir
        self._asset_sources = dict(asset_sources or {})
        self._initial_values = dict(initial_values or {})
        self._initializers = dict(initializers or {})
        self._store_entries = store_entries
        self._variables: dict[str, VariableInfo] = {}
        for vd in proto.variables:
            vwhere = f"{where} variable {vd.name!r}"
            shape = decode_shape(vd.shape, vwhere)
            if not vd.name or vd.name in self._variables:
                raise FormatError(f"{where}: the variable name {vd.name!r} is empty or repeated.")
            if shape is None or any(d is None for d in shape):
                raise FormatError(f"{vwhere} has the incomplete shape {format_shape(shape)}.")
            self._variables[vd.name] = VariableInfo(vd.name, decode_dtype(vd.dtype, vwhere), shape, vd.trainable)
        self._variants: list[Variant] = []
        for vp in proto.variants:
            variant = _decode_variant(vp, where, self._asset_sources, self._variables)
            if any(v.tags == variant.tags for v in self._variants):
                raise FormatError(f"{where} has two graph variants for the tags {_format_tags(variant.tags)}.")
            self._variants.append(variant)
        if not self._variants:
            raise FormatError(f"{where} has no graph variant.")

    # -- public API ----------------------------------------------------------------------------
    def get_tags(self) -> list[frozenset[str]]:
        """The tag sets of the graph variants, in definition order (``frozenset()`` is the default)."""
        return [v.tags for v in self._variants]

    def get_signature_names(self, tags: Iterable[str] | None = None) -> list[str]:
        """Names of the signatures of the variant selected by ``tags``, sorted."""
        return sorted(self._variant(tags).signatures)

    def get_input_info_dict(self, signature: str | None = None, tags: Iterable[str] | None = None) -> dict[str, TensorInfo]:
        """Input name -> :class:`TensorInfo` (``.dtype``, ``.shape``, ``.get_shape()``) of a signature."""
        return public_infos(self._variant(tags).signature(signature).inputs)

    def get_output_info_dict(self, signature: str | None = None, tags: Iterable[str] | None = None) -> dict[str, TensorInfo]:
        """Output name -> :class:`TensorInfo` of a signature."""
        return public_infos(self._variant(tags).signature(signature).outputs)

    def get_attached_message(self, key: str, message_type: Any, tags: Iterable[str] | None = None, required: bool = False):
        """A fresh copy of the message attached under ``key``, or None when there is none.

        Args:
            key: the key given to ``attach_message``.
            message_type: the protobuf message class to parse it as.
            tags: selects the graph variant.
            required: raise instead of returning None when the message is absent.

        Raises:
            MissingAttachmentError: ``required`` and absent (also a KeyError).
            SignatureError: the attachment is of another message type.
        """
        variant = self._variant(tags)
        packed = variant.attachments.get(key)
        if packed is None:
            if required:
                raise MissingAttachmentError(
                    f"Module variant {_format_tags(variant.tags)} has no attached message {key!r}; attached: "
                    f"{sorted(variant.attachments)}."
                )
            return None
        message = message_type()
        if not packed.Unpack(message):
            raise SignatureError(
                f"Attached message {key!r} is a {packed.TypeName()!r}, not a {message.DESCRIPTOR.full_name!r}."
            )
        return message

    @property
    def variables(self) -> dict[str, VariableInfo]:
        """Module-relative variable name -> declared dtype, shape and trainability (sorted by name)."""
        return dict(self._variables)

    @property
    def module_dir(self) -> str | None:
        """The directory the spec was loaded from, or None for a spec made by ``create_module_spec``."""
        return self._module_dir

    def export(self, path: str | os.PathLike, checkpoint_path: str | os.PathLike,
               name_transform_fn: Callable[[str], str] | None = None) -> None:
        """Writes this spec as a module whose variable values come from a name-keyed checkpoint.

        Args:
            path: the module directory to create.
            checkpoint_path: a checkpoint written by ``hubkit.train.Saver`` (prefix, or directory: latest).
            name_transform_fn: maps a module variable name to its key in the checkpoint.

        Raises:
            CheckpointError: a variable is missing from the checkpoint, or its shape differs (both named).
        """
        from hubkit.module.checkpoint_export import export_spec_from_checkpoint

        export_spec_from_checkpoint(self, path, checkpoint_path, name_transform_fn)

    def __repr__(self) -> str:
        where = self._module_dir or "create_module_spec"
        tags = ", ".join(_format_tags(t) for t in self.get_tags())
        return f"<hubkit.ModuleSpec from {where!r} tags=[{tags}] with {len(self._variables)} variables>"

    # -- internal ------------------------------------------------------------------------------
    def _variant(self, tags: Iterable[str] | None) -> Variant:
        key = normalize_tags(tags)
        for v in self._variants:
            if v.tags == key:
                return v
        available = sorted(sorted(v.tags) for v in self._variants)
        raise SignatureError(
            f"Module has no graph variant for the tags {sorted(key)}; available tag sets: {available}."
        )

    def _location(self) -> str:
        return self._where

    def _initial_value(self, name: str):
        """(stored array or None, initializer or None) for one variable; the array is not copied."""
        return self._initial_values.get(name), self._initializers.get(name)
