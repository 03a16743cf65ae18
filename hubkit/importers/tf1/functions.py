"""Control flow v2 in TF1 Hub modules: ``While``/``StatelessWhile``, ``If``/``StatelessIf`` and
``(Stateful)PartitionedCall`` calling functions of the graph's function library.

TF 2.x writes these (instead of Enter/Merge/Switch, :mod:`hubkit.importers.tf1.control_flow`) when a TF1 Hub
module is exported with ``hub.create_module_spec`` and v2 behaviour is not disabled. Each ``FunctionDef`` is
translated by the ordinary translators into a hubkit :class:`~hubkit.ops.func_graph.Function`: its arguments
become placeholders, its nodes' inputs (``node:output_arg:index``) become ``node:flat_index`` tensors, its
``ret`` map gives the outputs. A TF ``While`` carries every value it reads as a loop variable (variables too:
hubkit passes their values), so it maps onto hubkit's ``While`` with no captures; an ``If`` onto hubkit's
``If``; a ``PartitionedCall`` onto an ``If`` whose predicate is the constant true and whose branches are
both the function, which runs it once and keeps it differentiable.

``GraphDef.library`` is not part of :mod:`hubkit.importers.tf1.proto` (its ``GraphDef`` reads nodes only):
the few messages needed are declared here against the same field numbers as TensorFlow's
``function.proto`` (``FunctionDefLibrary.function = 1``; ``FunctionDef.signature = 1``, ``node_def = 3``,
``ret = 4``; ``GraphDef.library = 2``) and parsed from the ``GraphDef`` bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from hubkit.errors import FormatError
from hubkit.format.attrs import decode_attrs
from hubkit.graph import DType, bool_, float32
from hubkit.importers.tf1.dtypes import _HUBKIT
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
from hubkit.importers.tf1.translate import ASSIGN_OPS, TRANSLATORS, Emitter
from hubkit.ops.importer import split_tensor_name

if TYPE_CHECKING:
    from hubkit.importers.tf1.graph import GraphTranslator

__all__ = ["FUNCTION_CALL_OPS", "function_library", "function_ops"]

FUNCTION_CALL_OPS = frozenset({"While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall",
                               "StatefulPartitionedCall"})
# hubkit's Function attribute holds its callees' bodies, about a dozen protobuf message levels per call level, and
# protobuf refuses messages nested more than 100 deep: 8 levels of calls is what a hubkit module file can hold.
MAX_FUNCTION_DEPTH = 8
# Nodes of translated functions per module file, each function counted every time it is embedded with the functions
# it embeds (a function calling another twice per level would double per level; loading costs per embedded node).
MAX_FUNCTION_NODES = 100_000
# Output argument names of multi-output ops (``node:name:i`` in a function); every other op is assumed to have
# a single output argument (possibly a list, as While's ``output``), so ``i`` is the flat index.
_OUTPUT_ARGS = {
    "Unique": ("y", "idx"), "StringSplit": ("indices", "values", "shape"),
    "StringSplitV2": ("indices", "values", "shape"),
    "SparseFillEmptyRows": ("output_indices", "output_values", "empty_row_indicator", "reverse_index_map"),
    "FusedBatchNorm": ("y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2"),
    "FusedBatchNormV2": ("y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2"),
    "FusedBatchNormV3": ("y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2",
                         "reserve_space_3"),
    "TensorArrayV3": ("handle", "flow"), "Switch": ("output_false", "output_true"), "Merge": ("output", "value_index"),
}
_TF_TYPE = {name: number for number, name in _HUBKIT.items()}


def _messages() -> tuple[Any, Any]:
    """The ``FunctionDef`` message class and a ``GraphDef`` view holding only its ``library`` (field 2)."""
    pool = descriptor_pool.Default()
    try:
        pool.FindMessageTypeByName("hubkit_tf1.GraphLibrary")
    except KeyError:
        fdp = descriptor_pb2.FileDescriptorProto(name="hubkit/importers/tf1/function_library.proto",
                                                 package="hubkit_tf1", syntax="proto3",
                                                 dependency=["hubkit/importers/tf1/proto/tf1.proto"])
        msg = descriptor_pb2.FieldDescriptorProto
        fdef = fdp.message_type.add(name="FunctionDef")
        fdef.field.add(name="signature", number=1, type=msg.TYPE_MESSAGE, label=msg.LABEL_OPTIONAL,
                       type_name=".hubkit_tf1.OpDef")
        fdef.field.add(name="node_def", number=3, type=msg.TYPE_MESSAGE, label=msg.LABEL_REPEATED,
                       type_name=".hubkit_tf1.NodeDef")
        entry = fdef.nested_type.add(name="RetEntry")
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, type=msg.TYPE_STRING, label=msg.LABEL_OPTIONAL)
        entry.field.add(name="value", number=2, type=msg.TYPE_STRING, label=msg.LABEL_OPTIONAL)
        fdef.field.add(name="ret", number=4, type=msg.TYPE_MESSAGE, label=msg.LABEL_REPEATED,
                       type_name=".hubkit_tf1.FunctionDef.RetEntry")
        lib = fdp.message_type.add(name="FunctionDefLibrary")
        lib.field.add(name="function", number=1, type=msg.TYPE_MESSAGE, label=msg.LABEL_REPEATED,
                      type_name=".hubkit_tf1.FunctionDef")
        view = fdp.message_type.add(name="GraphLibrary")
        view.field.add(name="library", number=2, type=msg.TYPE_MESSAGE, label=msg.LABEL_OPTIONAL,
                       type_name=".hubkit_tf1.FunctionDefLibrary")
        pool.Add(fdp)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("hubkit_tf1.FunctionDef")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("hubkit_tf1.GraphLibrary")))


def function_library(graph_def: tfpb.GraphDef, where: str) -> dict[str, Any]:
    """``{name: FunctionDef}`` of a graph's function library (empty when it has none)."""
    _, view_cls = _messages()
    try:
        view = view_cls.FromString(graph_def.SerializeToString())
    except Exception:
        raise FormatError(f"{where}: the graph's function library is corrupt.") from None
    out = {}
    for f in view.library.function:
        if f.signature.name in out:
            raise FormatError(f"{where}: the function library defines {f.signature.name!r} twice.")
        out[f.signature.name] = f
    return out


def _library(t: GraphTranslator) -> dict[str, Any]:
    lib = getattr(t, "_function_library", None)
    if lib is None:
        lib = function_library(t.mg.graph_def, t.where)
        t._function_library = lib  # type: ignore[attr-defined]
    return lib


def _raw_node(t: GraphTranslator, name: str) -> tfpb.NodeDef:
    raw = getattr(t, "_raw_nodes", None)
    if raw is None:
        raw = {nd.name: nd for nd in t.mg.graph_def.node}
        t._raw_nodes = raw  # type: ignore[attr-defined]
    return raw[name]


def _value_dtype(t: GraphTranslator, tensor: str) -> DType:
    """The hubkit dtype of what a TF tensor holds (a variable's value for a resource handle)."""
    node = t.nodes[split_tensor_name(tensor)[0]]
    for _ in range(1000):
        if node.op in ("VarHandleOp", "VariableV2", "Variable", "Placeholder", "PlaceholderWithDefault", "Const"):
            value = node.attrs.get("dtype")
            if isinstance(value, DType):
                return value
            break
        if node.op in ("Identity", "Enter") and node.inputs:
            node = t.nodes[split_tensor_name(node.inputs[0])[0]]
            continue
        if node.op.startswith("TensorList") or node.op == "EmptyTensorList":
            return float32  # a list is carried as its array; its declared type is TF's flow type
        if node.op in ("While", "StatelessWhile"):  # a loop variable passed through: what entered the loop
            node = t.nodes[split_tensor_name(node.inputs[split_tensor_name(tensor)[1]])[0]]
            continue
        break
    raise FormatError(f"{t.where}: cannot tell the value type of {tensor!r} (a {node.op} output) passed to a "
                      "function; hubkit passes tensors and variables' values only.")


def _arg_dtypes(e: Emitter, types_attr: str, inputs: list[str]) -> list[DType]:
    types = e.attrs.get(types_attr)
    if not isinstance(types, list) or len(types) != len(inputs):
        raise FormatError(f"{e.where()}: its {types_attr!r} attribute does not list one type per input.")
    return [ty if isinstance(ty, DType) else _value_dtype(e.t, x) for ty, x in zip(types, inputs)]


def _function(e: Emitter, attr: str, arg_dtypes: list[DType], keep: list[int] | None = None) -> dict[str, Any]:
    """The hubkit Function data of the library function named by ``attr`` of the node, for these argument types
    (only the outputs ``keep`` when given)."""
    name = _raw_node(e.t, e.name).attr[attr].func.name
    return translate_function(e.t, name, arg_dtypes, e.where(), keep)


def _optional_outputs(e: Emitter, attr: str) -> set[int]:
    """The outputs of a branch function that are ``Optional`` values: the intermediates TF exports for its own
    gradient (under ``output_all_intermediates``), which nothing in a module's forward graph reads."""
    name = _raw_node(e.t, e.name).attr[attr].func.name
    fdef = _library(e.t).get(name)
    if fdef is None:
        return set()
    ops = {nd.name: nd.op for nd in fdef.node_def}
    return {i for i, out in enumerate(fdef.signature.output_arg)
            if ops.get(fdef.ret.get(out.name, "").split(":")[0], "").startswith("Optional")}


def translate_function(t: GraphTranslator, name: str, arg_dtypes: list[DType], where: str,
                       keep: list[int] | None = None) -> dict[str, Any]:
    """The hubkit Function data of library function ``name`` for these argument types (memoised per module graph);
    its nodes, with those of the functions it embeds, count against :data:`MAX_FUNCTION_NODES`."""
    memo = getattr(t, "_function_memo", None)
    if memo is None:
        memo = t._function_memo = {}  # type: ignore[attr-defined]
    key = (name, tuple(d.name for d in arg_dtypes), None if keep is None else tuple(keep))
    if key not in memo:  # the same function for the same types translates the same: once per module graph
        memo[key] = _translate_function(t, name, arg_dtypes, where, keep)
    data, weight = memo[key]
    t._nested_weight = getattr(t, "_nested_weight", 0) + weight  # type: ignore[attr-defined]
    t.budget.function_nodes += weight
    if t.budget.function_nodes > MAX_FUNCTION_NODES:
        raise FormatError(f"{where}: the functions it calls (and those they call) expand to more than "
                          f"{MAX_FUNCTION_NODES} nodes in all.")
    return data


def _translate_function(t: GraphTranslator, name: str, arg_dtypes: list[DType], where: str,
                        keep: list[int] | None) -> tuple[dict[str, Any], int]:
    """The Function data and its weight: its nodes and those of every function it embeds."""
    from hubkit.importers.tf1.graph import GraphTranslator, run_translator

    fdef = _library(t).get(name)
    if fdef is None:
        raise FormatError(f"{where} calls the function {name!r}, which is not in the graph's function library.")
    depth = getattr(t, "_function_depth", 0) + 1
    if depth > MAX_FUNCTION_DEPTH:
        raise FormatError(f"{where}: functions are nested more than {MAX_FUNCTION_DEPTH} levels deep.")
    sig = fdef.signature
    if len(sig.input_arg) != len(arg_dtypes):
        raise FormatError(f"{where} passes {len(arg_dtypes)} values to function {name!r}, which takes "
                          f"{len(sig.input_arg)}.")
    mg = tfpb.MetaGraphDef()
    mg.meta_info_def.stripped_op_list.CopyFrom(t.mg.meta_info_def.stripped_op_list)
    args = []
    for arg, dtype in zip(sig.input_arg, arg_dtypes):
        ph = mg.graph_def.node.add(name=arg.name, op="Placeholder")
        ph.attr["dtype"].type = _TF_TYPE[dtype.name]
        args.append(f"{arg.name}:0")
    for nd in fdef.node_def:
        copy = mg.graph_def.node.add()
        copy.CopyFrom(nd)
        del copy.input[:]
        copy.input.extend(_flat_input(fdef, i, where) for i in nd.input)
    sub = GraphTranslator(mg, f"{t.where}: function {name!r}", t.variables, t._resolve_variable, t._resolve_asset,
                          t.budget)
    sub._function_library = _library(t)  # type: ignore[attr-defined]
    sub._function_memo = t._function_memo  # type: ignore[attr-defined]
    sub._nested_weight = 0  # type: ignore[attr-defined]
    sub._function_depth = depth  # type: ignore[attr-defined]
    sub._inits = sub._table_initializers()
    sub._translated = set()
    sub._var_infos = {}
    rets = []
    for out in sig.output_arg:
        if out.name not in fdef.ret:
            raise FormatError(f"{where}: function {name!r} does not say what its output {out.name!r} is.")
        rets.append(_flat_input(fdef, fdef.ret[out.name], where))
    if keep is not None:
        rets = [rets[i] for i in keep]
    order = sub._order([split_tensor_name(x)[0] for x in args + rets])
    for n in order:
        node = sub.nodes[n]
        emitter = Emitter(sub, n, node.op, node.attrs, [sub.tensor_map.get(x, x) for x in node.inputs], node.inputs)
        translator = TRANSLATORS.get(node.op)
        if node.op in ASSIGN_OPS:
            raise FormatError(f"{sub.where}: {node.op} node {n!r} assigns a variable inside a function; hubkit's "
                              "loop and branch functions are pure, so it cannot run this module.")
        if translator is None:
            raise FormatError(f"{sub.where}: hubkit does not support the TF op {node.op!r} (node {n!r}).")
        run_translator(sub, n, emitter)
        sub._translated.add(n)
    nodes = [{"name": nd.name, "op": nd.op, "inputs": list(nd.inputs), "control_inputs": [],
              "attrs": decode_attrs(nd.attrs)} for nd in sub.out_nodes]
    data = {"nodes": nodes, "inputs": args, "outputs": [sub.tensor_map.get(r, r) for r in rets]}
    return data, len(nodes) + sub._nested_weight  # type: ignore[attr-defined]


def _flat_input(fdef: Any, name: str, where: str) -> str:
    """A function-body input (``arg``, ``node:output_arg:i`` or ``^node``) as a graph tensor name."""
    if name.startswith("^"):
        return name
    parts = name.split(":")
    if len(parts) == 1:
        return f"{name}:0"  # a function argument
    if len(parts) != 3 or not parts[2].isdigit():
        raise FormatError(f"{where}: function {fdef.signature.name!r} has the malformed input {name!r}.")
    node, arg, index = parts[0], parts[1], int(parts[2])
    op = next((nd.op for nd in fdef.node_def if nd.name == node), "")
    names = _OUTPUT_ARGS.get(op)
    if names is not None:
        if arg not in names:
            raise FormatError(f"{where}: function {fdef.signature.name!r} reads output {arg!r} of {op} node "
                              f"{node!r}, which has the outputs {list(names)}.")
        index += names.index(arg)  # these ops' output arguments are single tensors
    return f"{node}:{index}"


def function_ops(t: GraphTranslator, nodes: list[str]) -> dict[str, list[str]]:
    """``{op: ["function/node", ...]}`` of every op inside the library functions that ``nodes`` call (nested
    calls followed), so unsupported ones are reported with the graph's before anything is translated."""
    calls = [n for n in nodes if t.nodes[n].op in FUNCTION_CALL_OPS]
    if not calls:
        return {}
    lib = _library(t)
    todo = [a.func.name for n in calls for a in _raw_node(t, n).attr.values() if a.HasField("func")]
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    while todo:
        name = todo.pop()
        if name in seen or name not in lib:
            continue
        seen.add(name)
        for nd in lib[name].node_def:
            if nd.op.startswith("Optional"):
                continue  # gradient intermediates a branch returns; _if drops those outputs untranslated
            out.setdefault(nd.op, []).append(f"{name}/{nd.name}")
            todo.extend(a.func.name for a in nd.attr.values() if a.HasField("func"))
    return out


# -- translators --------------------------------------------------------------------------------------------
def _while(e: Emitter) -> None:
    dtypes = _arg_dtypes(e, "T", e.tf_inputs)
    e.emit("While", e.inputs, {"cond": _function(e, "cond", dtypes), "body": _function(e, "body", dtypes),
                               "n_vars": len(e.inputs), "has_max": False})


def _if(e: Emitter) -> None:
    dtypes = _arg_dtypes(e, "Tin", e.tf_inputs[1:])
    e.require(e.attrs.get("Tcond", bool_) is bool_, "its predicate is not a bool (hubkit's If takes a bool).")
    dropped = _optional_outputs(e, "then_branch") | _optional_outputs(e, "else_branch")
    keep = [k for k in range(len(e.attrs.get("Tout") or [])) if k not in dropped]
    e.emit("If", e.inputs, {"then_branch": _function(e, "then_branch", dtypes, keep),
                            "else_branch": _function(e, "else_branch", dtypes, keep)})
    for j, k in enumerate(keep):
        if j != k:
            e.alias(k, f"{e.name}:{j}")


def _call(e: Emitter) -> None:
    dtypes = _arg_dtypes(e, "Tin", e.tf_inputs)
    then, other = _function(e, "f", dtypes), _function(e, "f", dtypes)  # the same (memoised); embedded twice
    e.emit("If", [e.const(True, bool_), *e.inputs], {"then_branch": then, "else_branch": other})


for _op in ("While", "StatelessWhile"):
    TRANSLATORS[_op] = _while
for _op in ("If", "StatelessIf"):
    TRANSLATORS[_op] = _if
for _op in ("PartitionedCall", "StatefulPartitionedCall"):
    TRANSLATORS[_op] = _call
