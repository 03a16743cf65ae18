"""One TF ``MetaGraphDef`` (one tag set) -> one hubkit graph variant.

Only what the module exposes is imported: the nodes that signature outputs, ``update_ops``,
``regularization_losses`` and the variables depend on. Initializers, savers and summaries are left
out. Attributes a graph omits take the defaults of ``meta_info_def.stripped_op_list``. Ops hubkit does
not support are all collected before anything is translated, so one error names every one of them.
Control inputs are dropped (hubkit runs stateful ops after the pure ones of a call) except those of
``NoOp`` groups, which become ``Group`` nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from hubkit.errors import FormatError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.graph_codec import encode_tensor_info
from hubkit.graph import DType
from hubkit.graph.walk import dependencies_first
from hubkit.importers.tf1.attrs import TensorBudget, decode_attr_value
from hubkit.importers.tf1.control_flow import CONTROL_FLOW_TF_OPS, control_flow_of
from hubkit.importers.tf1.functions import function_ops
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
from hubkit.importers.tf1.sparse_sig import signature_entries
from hubkit.importers.tf1.tensor_array import HANDLE_OPS
from hubkit.importers.tf1.translate import TRANSLATORS, Emitter, supported_tf_ops
from hubkit.ops.importer import split_tensor_name

__all__ = ["UNTYPED_ATTACHMENT", "GraphTranslator", "VariableInfo", "unsupported_ops_error"]

UNTYPED_ATTACHMENT = "type.googleapis.com/hubkit_tf1.UntypedAttachment"
IMAGE_MODULE_INFO_KEY = "image_module_info"
_IMAGE_MODULE_INFO_TYPE = "type.googleapis.com/hubkit.module.ImageModuleInfo"
_VARIABLE_OPS = ("VarHandleOp", "VariableV2", "Variable")
_TABLE_OPS = ("HashTableV2", "HashTable")
_CARRIED = ("update_ops", "regularization_losses")
MAX_NODES = 2_000_000
MAX_CONST_ELEMENTS_PER_GRAPH = 1 << 26


@dataclass
class VariableInfo:
    """A module variable found in a TF graph: its value's location or (for strings) the value itself."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    trainable: bool
    store_key: str
    slice: tuple[tuple[int, int], ...] | None = None
    const_value: np.ndarray | None = None


@dataclass
class TableInfo:
    kind: str  # "text_file" or "const"
    attrs: dict[str, Any]
    filename: str = ""  # hubkit tensor of the vocabulary asset path (text_file tables)
    tf_filename: str = ""
    asset: str = ""
    size: int = 0


@dataclass
class _Node:
    name: str
    op: str
    inputs: list[str]  # TF tensor names
    control: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


def _tensor_name(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def unsupported_ops_error(where: str, unsupported: dict[str, list[str]], used_ops: set[str]) -> FormatError:
    """One error naming every unsupported op and the nodes using it."""
    parts = []
    for op in sorted(unsupported):
        nodes = sorted(unsupported[op])
        shown = ", ".join(repr(n) for n in nodes[:5]) + (f" and {len(nodes) - 5} more" if len(nodes) > 5 else "")
        parts.append(f"{op!r} (used by {shown})")
    supported_here = len(used_ops) - len(unsupported)
    return FormatError(
        f"{where} uses {len(unsupported)} TF op type(s) that hubkit does not support: {'; '.join(parts)}. "
        f"Its other {supported_here} op types are supported (hubkit translates {len(supported_tf_ops())} TF ops; "
        "see docs/tf1_import.md). Please report the missing ops to the hubkit issue tracker, naming the module."
    )


class GraphTranslator:
    """Translates one MetaGraphDef; ``variables`` is shared by every variant of the module."""

    def __init__(self, meta_graph: tfpb.MetaGraphDef, where: str, variables: dict[str, VariableInfo],
                 resolve_variable, resolve_asset, budget: TensorBudget | None = None) -> None:
        self.mg = meta_graph
        self.budget = TensorBudget() if budget is None else budget  # one per module file, shared by its graphs
        self.tags = frozenset(meta_graph.meta_info_def.tags)
        self.where = where
        self.variables = variables
        self._resolve_variable = resolve_variable  # (node, attrs, VariableDef or None, trainable) -> VariableInfo
        self._resolve_asset = resolve_asset  # filename -> absolute path (checked inside assets/)
        self.out_nodes: list[pb.NodeDef] = []
        self.tensor_map: dict[str, str] = {}
        self.asset_consts: dict[str, str] = {}
        self.signature_inputs: set[str] = set()
        self._consts: dict[str, np.ndarray] = {}
        self._tables: dict[str, TableInfo] = {}
        self.nodes = self._read_nodes()

    # -- reading ------------------------------------------------------------------------------------------
    def _read_nodes(self) -> dict[str, _Node]:
        graph = self.mg.graph_def
        if len(graph.node) > MAX_NODES:
            raise FormatError(f"{self.where} has {len(graph.node)} nodes, more than the limit of {MAX_NODES}.")
        defaults: dict[str, dict[str, tfpb.AttrValue]] = {}
        for op in self.mg.meta_info_def.stripped_op_list.op:
            defaults[op.name] = {a.name: a.default_value for a in op.attr if a.HasField("default_value")}
        nodes: dict[str, _Node] = {}
        const_elements = 0
        for nd in graph.node:
            if not nd.name or nd.name in nodes:
                raise FormatError(f"{self.where}: the node name {nd.name!r} is empty or repeated.")
            where = f"{self.where}: node {nd.name!r} attribute"
            attrs = {k: decode_attr_value(v, f"{where} {k!r}", self.budget) for k, v in defaults.get(nd.op, {}).items()
                     if k not in nd.attr}
            for k, v in nd.attr.items():
                if k.startswith("_"):
                    continue  # _class, _output_shapes, ...: placement and debugging hints
                attrs[k] = decode_attr_value(v, f"{where} {k!r}", self.budget)
            data = [i for i in nd.input if not i.startswith("^")]
            control = [i[1:] for i in nd.input if i.startswith("^")]
            nodes[nd.name] = _Node(nd.name, nd.op, [_tensor_name(i) for i in data], control, attrs)
            value = attrs.get("value") if nd.op == "Const" and "value" in nd.attr else None
            if isinstance(value, np.ndarray):
                const_elements += value.size
                if const_elements > MAX_CONST_ELEMENTS_PER_GRAPH:
                    raise FormatError(f"{self.where}: its constants hold more than {MAX_CONST_ELEMENTS_PER_GRAPH} "
                                      "elements in all.")
                self._consts[f"{nd.name}:0"] = value
        for node in nodes.values():
            for t in node.inputs + node.control:
                if split_tensor_name(t)[0] not in nodes:
                    raise FormatError(f"{self.where}: node {node.name!r} reads {t!r}, which is not in the graph.")
        return nodes

    def const_value(self, tensor: str) -> np.ndarray | None:
        return self._consts.get(tensor)

    def control_inputs_of(self, name: str) -> list[str]:
        return [c for c in self.nodes[name].control if c in self._translated]

    def _collection(self, key: str) -> tfpb.CollectionDef | None:
        return self.mg.collection_def.get(key)

    def _variable_defs(self) -> tuple[dict[str, tfpb.VariableDef], set[str]]:
        defs: dict[str, tfpb.VariableDef] = {}
        trainable: set[str] = set()
        for key in ("variables", "trainable_variables"):
            cd = self._collection(key)
            if cd is None:
                continue
            for raw in cd.bytes_list.value:
                try:
                    vd = tfpb.VariableDef.FromString(raw)
                except Exception:
                    raise FormatError(f"{self.where}: the {key!r} collection holds a corrupt VariableDef.") from None
                node = split_tensor_name(vd.variable_name)[0]
                defs.setdefault(node, vd)
                if key == "trainable_variables" or vd.trainable:
                    trainable.add(node)
        return defs, trainable

    # -- tables and variables -------------------------------------------------------------------------------
    def _table_initializers(self) -> dict[str, _Node]:
        out = {}
        for node in self.nodes.values():
            if node.op in ("InitializeTableFromTextFileV2", "InitializeTableFromTextFile", "InitializeTableV2",
                           "InitializeTable") and node.inputs:
                out[split_tensor_name(node.inputs[0])[0]] = node
        return out

    def table_for(self, tf_tensor: str, where: str) -> TableInfo:
        name = split_tensor_name(tf_tensor)[0]
        table = self._tables.get(name)
        if table is None:
            raise FormatError(f"{where}: its table {name!r} is not a hash table initialised from a vocabulary "
                              "file or from constants.")
        if table.kind == "text_file":
            table.filename = self.tensor_map.get(table.tf_filename, table.tf_filename)
        return table

    def _build_table(self, node: _Node, init: _Node | None) -> TableInfo:
        where = f"{self.where}: table {node.name!r}"
        if node.op not in _TABLE_OPS or init is None:
            raise FormatError(f"{where} ({node.op}) has no initializer hubkit can read.")
        key_dtype = hubkit_dtype_attr(node.attrs, "key_dtype", where)
        value_dtype = hubkit_dtype_attr(node.attrs, "value_dtype", where)
        if init.op.startswith("InitializeTableFromTextFile"):
            filename = init.inputs[1]
            src = split_tensor_name(filename)[0]
            if src not in self.asset_consts:
                raise FormatError(f"{where} reads the file named by {filename!r}, which is not one of the module's "
                                  "assets; hubkit reads nothing outside assets/.")
            if int(init.attrs.get("offset", 0) or 0):
                raise FormatError(f"{where} skips lines of its vocabulary (offset), which hubkit does not support.")
            attrs = {"key_index": int(init.attrs.get("key_index", -2)),
                     "value_index": int(init.attrs.get("value_index", -1)),
                     "vocab_size": int(init.attrs.get("vocab_size", -1)),
                     "delimiter": str(init.attrs.get("delimiter", "\t")), "key_dtype": key_dtype,
                     "value_dtype": value_dtype}
            from hubkit.ops.tf_text import read_text_file_table

            table = read_text_file_table(self._resolve_asset(self.asset_consts[src]), **attrs)  # fails at load
            return TableInfo("text_file", attrs, tf_filename=filename, asset=self.asset_consts[src], size=len(table))
        keys, values = (self.const_value(t) for t in init.inputs[1:3])
        if keys is None or values is None:
            raise FormatError(f"{where} is initialised from tensors that are not constants.")
        return TableInfo("const", {"table_keys": keys, "table_values": values, "value_dtype": value_dtype})

    def variable_for(self, name: str) -> VariableInfo:
        return self._var_infos[name]

    def variable_tensor(self, tf_tensor: str, where: str) -> str:
        node = split_tensor_name(tf_tensor)[0]
        seen = 0
        while self.nodes[node].op == "Identity" and seen < 100:  # a ref variable read through its Identity
            node = split_tensor_name(self.nodes[node].inputs[0])[0]
            seen += 1
        if self.nodes[node].op not in _VARIABLE_OPS or node not in self._var_infos:
            raise FormatError(f"{where} assigns to {tf_tensor!r}, which is not a variable.")
        return f"{node}:0"

    # -- selection -------------------------------------------------------------------------------------------
    def _deps(self, node: _Node, raw: bool = False) -> list[str]:
        """The nodes ``node`` is computed from: a TF1 loop's Exit or cond's Merge from what the whole loop or cond
        reads (it is translated as one node); ``raw`` gives the plain data inputs (every node a loop holds)."""
        if not raw and node.op in CONTROL_FLOW_TF_OPS:
            ext = control_flow_of(self).external_inputs(node)
            if ext is not None:
                return [split_tensor_name(t)[0] for t in ext]
        if node.op in ("LookupTableFindV2", "LookupTableSizeV2"):
            table = split_tensor_name(node.inputs[0])[0] if node.inputs else ""
            init = self._inits.get(table)
            extra = [split_tensor_name(init.inputs[1])[0]] if init is not None and len(init.inputs) > 1 and \
                init.op.startswith("InitializeTableFromTextFile") else []
            return [split_tensor_name(t)[0] for t in node.inputs[1:]] + extra
        if node.op in HANDLE_OPS and not raw:  # a TensorArray's handle is not data: its flow carries the array
            return [split_tensor_name(t)[0] for t in node.inputs[1:]]
        deps = [split_tensor_name(t)[0] for t in node.inputs]
        if node.op == "NoOp":
            deps += node.control
        return deps

    def _order(self, roots: list[str]) -> list[str]:
        """Names of the nodes ``roots`` depend on, dependencies first; a cycle is refused."""
        def cycle(name: str) -> FormatError:
            return FormatError(
                f"{self.where} has a cycle through node {name!r} ({self.nodes[name].op}) that is not a "
                "TF1 while loop (Enter/Merge/Switch/LoopCond/NextIteration/Exit)."
            )
        return dependencies_first(roots, lambda name: self._deps(self.nodes[name]), cycle)

    # -- translation ---------------------------------------------------------------------------------------------
    def translate(self) -> pb.GraphVariant:
        variant = pb.GraphVariant()
        variant.tags.extend(sorted(self.tags))
        self._read_assets(variant)
        signatures = self._read_signatures()
        carried = self._carried_collections()
        var_defs, trainable = self._variable_defs()
        order = self._needed(signatures, carried, var_defs)
        self._var_infos: dict[str, VariableInfo] = {}
        for n in order:
            node = self.nodes[n]
            if node.op in _VARIABLE_OPS:
                info = self._resolve_variable(node.name, node.op, node.attrs, var_defs.get(n), n in trainable)
                self._var_infos[n] = info
            elif node.op in ("LookupTableFindV2", "LookupTableSizeV2"):
                if len(node.inputs) < (3 if node.op == "LookupTableFindV2" else 1):
                    raise FormatError(f"{self.where}: {node.op} node {n!r} has {len(node.inputs)} inputs, too few.")
                table = split_tensor_name(node.inputs[0])[0]
                if table not in self._tables:
                    if table not in self.nodes:
                        raise FormatError(f"{self.where}: node {n!r} reads the unknown table {table!r}.")
                    self._tables[table] = self._build_table(self.nodes[table], self._inits.get(table))
        self._translated: set[str] = set()
        for n in order:
            node = self.nodes[n]
            inputs = [self.tensor_map.get(t, t) for t in node.inputs]
            run_translator(self, n, Emitter(self, n, node.op, node.attrs, inputs, node.inputs))
            self._translated.add(n)
        try:
            variant.nodes.extend(self.out_nodes)
        except DecodeError:  # defensive: functions.MAX_FUNCTION_DEPTH keeps nesting within protobuf's limit
            raise FormatError(f"{self.where}: its functions nest too deeply for a hubkit module graph.") from None
        for name, info in self._var_infos.items():
            if info.const_value is None:
                self.variables.setdefault(name, info)
        self._write_signatures(variant, signatures)
        self._write_collections(variant, carried)
        self._write_attachments(variant)
        return variant

    def _needed(self, signatures, carried, var_defs) -> list[str]:
        roots = [split_tensor_name(t)[0] for _, _, infos in signatures for t in infos.values()]
        roots += [split_tensor_name(name)[0] for _, items in carried for _, name in items]
        roots += [n for n in var_defs if n in self.nodes]
        self._inits = self._table_initializers()
        roots = list(dict.fromkeys(roots))
        reached = self.reached = self._reach(roots)  # the control-flow translation groups a cond's needed Merges
        # unsupported ops first, over every node (those inside loops and conds too)
        unsupported: dict[str, list[str]] = {}
        for n in sorted(reached):
            if self.nodes[n].op not in TRANSLATORS:
                unsupported.setdefault(self.nodes[n].op, []).append(n)
        in_functions = function_ops(self, sorted(reached))  # control flow v2: ops of the called library functions
        for op, users in in_functions.items():
            if op not in TRANSLATORS:
                unsupported.setdefault(op, []).extend(users)
        if unsupported:
            raise unsupported_ops_error(self.where, unsupported, {self.nodes[n].op for n in reached} | set(in_functions))
        return self._order(roots)

    def _reach(self, roots: list[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(self._deps(self.nodes[name], raw=True))
        return seen

    def needed_nodes(self, check: bool = True) -> list[str]:
        """The TF nodes the module's signatures, update ops, losses and variables need: dependencies first, or
        (``check=False``, for ``hubkit info``) unordered and without refusing unsupported ops."""
        signatures, carried, var_defs = self._read_signatures(), self._carried_collections(), self._variable_defs()[0]
        if check:
            return self._needed(signatures, carried, var_defs)
        self._inits = self._table_initializers()
        roots = [split_tensor_name(t)[0] for _, _, infos in signatures for t in infos.values()]
        roots += [split_tensor_name(name)[0] for _, items in carried for _, name in items]
        roots += [n for n in var_defs if n in self.nodes]
        return sorted(self._reach(roots))

    # -- signatures, collections, assets, attachments -----------------------------------------------------------
    def _read_signatures(self) -> list[tuple[str, str, dict[str, str]]]:
        out = []
        self._signature_specs: dict[tuple[str, str, str], tuple[DType, Any]] = {}
        for key in sorted(self.mg.signature_def):
            sd = self.mg.signature_def[key]
            for part_name, part in (("input", sd.inputs), ("output", sd.outputs)):
                names = {}
                for k in sorted(part):
                    where = f"{self.where}: signature {key!r} {part_name} {k!r}"
                    for hk_key, name, dtype, shape in signature_entries(k, part[k], where):
                        if split_tensor_name(name)[0] not in self.nodes:
                            raise FormatError(f"{self.where}: signature {key!r} names the tensor {name!r}, which is "
                                              "not in the graph.")
                        names[hk_key] = name
                        self._signature_specs[(key, part_name, hk_key)] = (dtype, shape)
                        if part_name == "input":
                            self.signature_inputs.add(split_tensor_name(name)[0])
                out.append((key, part_name, names))
        return out

    def _write_signatures(self, variant: pb.GraphVariant, signatures) -> None:
        by_key: dict[str, pb.SignatureDef] = {}
        for key, part, names in signatures:
            sd = by_key.get(key)
            if sd is None:
                sd = by_key[key] = variant.signatures.add(name=key)
            for k in sorted(names):
                dtype, shape = self._signature_specs[(key, part, k)]
                target = sd.inputs.add() if part == "input" else sd.outputs.add()
                encode_tensor_info(target, k, self.tensor_map.get(names[k], names[k]), dtype, shape)

    def _carried_collections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        out = []
        for key in _CARRIED:
            cd = self._collection(key)
            if cd is None:
                continue
            if cd.WhichOneof("kind") != "node_list":
                raise FormatError(f"{self.where}: the {key!r} collection is not a list of nodes or tensors.")
            items = []
            for value in cd.node_list.value:
                if split_tensor_name(value)[0] not in self.nodes:
                    raise FormatError(f"{self.where}: the {key!r} collection names {value!r}, which is not in the "
                                      "graph.")
                items.append(("tensor" if ":" in value else "node", value))
            out.append((key, items))
        return out

    def _write_collections(self, variant: pb.GraphVariant, carried) -> None:
        produced = {nd.name: nd for nd in self.out_nodes}
        for key, items in carried:
            cd = variant.collections.add(key=key)
            for kind, name in items:
                if kind == "tensor":
                    mapped = self.tensor_map.get(name, name)
                    cd.items.add(tensor=mapped)
                elif name in produced:
                    cd.items.add(node=name)

    def _read_assets(self, variant: pb.GraphVariant) -> None:
        cd = self._collection("saved_model_assets")
        if cd is None:
            return
        for packed in cd.any_list.value:
            asset = tfpb.AssetFileDef()
            if packed.TypeName() != "tensorflow.AssetFileDef" or not _parse(asset, packed.value):
                raise FormatError(f"{self.where}: the 'saved_model_assets' collection holds a {packed.TypeName()!r}, "
                                  "not an AssetFileDef.")
            node = split_tensor_name(asset.tensor_info.name)[0]
            if node not in self.nodes or self.nodes[node].op != "Const":
                raise FormatError(f"{self.where}: asset {asset.filename!r} names {asset.tensor_info.name!r}, which is "
                                  "not a string constant.")
            self._resolve_asset(asset.filename)
            self.asset_consts[node] = asset.filename
            variant.assets.add(node=node, filename=asset.filename)

    def _write_attachments(self, variant: pb.GraphVariant) -> None:
        cd = self._collection("hub_module_attachments")
        if cd is None:
            return
        seen = set()
        for raw in cd.bytes_list.value:
            try:
                att = tfpb.ModuleAttachment.FromString(raw)
            except Exception:
                raise FormatError(f"{self.where}: the 'hub_module_attachments' collection is corrupt.") from None
            if att.key in seen:
                raise FormatError(f"{self.where}: the attachment {att.key!r} is repeated.")
            seen.add(att.key)
            entry = variant.attachments.add(key=att.key)
            entry.message.type_url = _IMAGE_MODULE_INFO_TYPE if att.key == IMAGE_MODULE_INFO_KEY else UNTYPED_ATTACHMENT
            entry.message.value = att.value


def run_translator(t: GraphTranslator, name: str, emitter: Emitter) -> None:
    """Runs the translator of node ``name``; a node the translator cannot read (too few inputs, an attribute of the
    wrong kind) gives a FormatError naming it."""
    node = t.nodes[name]
    try:
        TRANSLATORS[node.op](emitter)
    except IndexError:
        raise FormatError(f"{t.where}: {node.op} node {name!r} cannot be translated: it has too few inputs "
                          f"({len(node.inputs)}) or a list attribute too short.") from None
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise FormatError(f"{t.where}: {node.op} node {name!r} cannot be translated: {e}.") from None


def _parse(message: Any, data: bytes) -> bool:
    try:
        message.ParseFromString(data)
    except Exception:
        return False
    return True


def hubkit_dtype_attr(attrs: dict[str, Any], key: str, where: str) -> DType:
    value = attrs.get(key)
    if not isinstance(value, DType):
        raise FormatError(f"{where} has the {key} {value!r}, which hubkit tensors cannot hold.")
    return value

