"""``hubkit info`` for a TF1 Hub module: signatures, variables and every TF op with whether hubkit supports it.

Reading is the same as :func:`load_spec`'s (bounded, nothing executed) but nothing is translated, so a
module with unsupported ops can still be inspected.
"""

from __future__ import annotations

import collections
import os

from hubkit.errors import HubkitError
from hubkit.importers.tf1 import SAVED_MODEL_FILE, _check_module_def, _read_proto
from hubkit.importers.tf1.attrs import decode_shape
from hubkit.importers.tf1.bundle import INDEX_FILE, read_bundle
from hubkit.importers.tf1.dtypes import tf_dtype_name
from hubkit.importers.tf1.functions import function_library
from hubkit.importers.tf1.graph import GraphTranslator
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
from hubkit.importers.tf1.translate import TRANSLATORS

__all__ = ["describe_tf1_module"]

_FOLDED = frozenset({"HashTable", "HashTableV2", "InitializeTable", "InitializeTableV2", "InitializeTableFromTextFile",
                     "InitializeTableFromTextFileV2"})


def _shape(proto: tfpb.TensorShapeProto) -> str:
    shape = decode_shape(proto)
    return "<unknown>" if shape is None else str([d for d in shape])


def describe_tf1_module(directory: str) -> list[str]:
    """The lines ``hubkit info`` prints for the TF1 module in ``directory``."""
    _check_module_def(directory)
    sm = _read_proto(os.path.join(directory, SAVED_MODEL_FILE), tfpb.SavedModel, "TF1 SavedModel")
    lines = ["  format: TF1 Hub module (read by hubkit.importers.tf1; `hubkit convert` writes the hubkit format)"]
    for mg in sm.meta_graphs:
        lines.append(f"  tags {{{', '.join(sorted(mg.meta_info_def.tags))}}}:")
        for key in sorted(mg.signature_def):
            sd = mg.signature_def[key]
            lines.append(f"    signature {key!r}")
            for kind, infos in (("input", sd.inputs), ("output", sd.outputs)):
                for name in sorted(infos):
                    info = infos[name]
                    what = "sparse" if info.WhichOneof("encoding") == "coo_sparse" else _shape(info.tensor_shape)
                    lines.append(f"      {kind:6} {name}: {tf_dtype_name(info.dtype)} {what}")
        counts = collections.Counter(n.op for n in mg.graph_def.node)
        translator = GraphTranslator(mg, "TF1 SavedModel", {}, None, lambda filename: filename)
        try:
            needed = {translator.nodes[n].op for n in translator.needed_nodes(check=False)}
        except HubkitError as e:
            lines.append(f"    (cannot tell which ops are needed: {e})")
            needed = set(counts)
        blocking = sorted(op for op in needed if op not in TRANSLATORS)
        lines.append(f"    TF ops: {len(counts)} types; {len(needed)} needed by the signatures, "
                     f"{len(blocking)} of them not supported{' (the module will not load)' if blocking else ''}")
        for op in sorted(counts):
            if op in TRANSLATORS:
                state = "yes"
            elif op in _FOLDED:
                state = "yes (folded into the lookups)"
            elif op in needed:
                state = "no (needed: the module does not load)"
            else:
                state = "no (not needed: initializers, saving; ignored)"
            lines.append(f"      {op}: {counts[op]} node(s), supported: {state}")
        library = function_library(mg.graph_def, "TF1 SavedModel")
        if library:  # control flow v2: the ops of the functions While/If/PartitionedCall call
            in_functions = collections.Counter(nd.op for f in library.values() for nd in f.node_def)
            lines.append(f"    library functions: {len(library)}, with {len(in_functions)} TF op types")
            for op in sorted(in_functions):
                state = "yes" if op in TRANSLATORS else "no"
                if op.startswith("Optional"):
                    state = "not needed (gradient intermediates a branch returns: dropped)"
                lines.append(f"      {op}: {in_functions[op]} node(s) in functions, supported: {state}")
    variables_dir = os.path.join(directory, "variables")
    if os.path.isfile(os.path.join(variables_dir, INDEX_FILE)):
        bundle = read_bundle(variables_dir)
        total = sum(x.size for x in bundle.entries.values()) + sum(x.size for x in bundle.slices.values())
        lines.append(f"  variables: {len(bundle.entries)}, {total} bytes")
        for name in sorted(bundle.entries):
            entry = bundle.entries[name]
            parts = f", {len(entry.slices)} slices" if entry.slices else ""
            lines.append(f"    {name}: {tf_dtype_name(entry.dtype)} {list(entry.shape)}{parts}")
    else:
        lines.append("  variables: 0")
    return lines
