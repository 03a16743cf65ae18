"""``Module``: an instantiated module spec with its own variables, callable eagerly or inside a graph."""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from hubkit.errors import FormatError, GraphError, ResolveError, SignatureError
from hubkit.format.safetensors_io import VARIABLES_DIR, map_tensors
from hubkit.graph import Graph, GraphKeys, Tensor, format_shape, get_default_graph
from hubkit.graph.graph import entered_graph
from hubkit.graph.shapes import merge_shapes
from hubkit.module.assets import ASSET_FILEPATHS
from hubkit.module.loader import load_module_spec
from hubkit.module.signatures import (
    SignatureSpec,
    TensorInfo,
    composites,
    convert_eager_inputs,
    convert_symbolic_input,
    group_composite_outputs,
    output_keys,
    pack_inputs,
    public_infos,
)
from hubkit.module.spec import ModuleSpec, Variant, normalize_tags
from hubkit.ops.check import check_graph
from hubkit.ops.importer import NodeSpec, import_nodes, nodes_needed
from hubkit.runtime.executor import Plan, compile_plan
from hubkit.runtime.partitioned import group_partitions
from hubkit.runtime.scopes import claim_scope_name
from hubkit.runtime.state import runtime_state
from hubkit.runtime.variables import Variable, bind_variable, register_in_collections

__all__ = ["Module"]

_MODULE_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-]*$")


class _PlacedModules(dict):
    """Per-graph state: ``id(module)`` -> ``(module, variable scope)`` of each module placed in the graph."""


class _CalledModules(set):
    """Per-graph state: ``id(module)`` of each module called in the graph (its losses are collected once)."""


_CONCRETE_TYPES = frozenset((list, tuple, np.ndarray, str, bytes, int, float, bool))  # never _as_graph_tensor


def _is_symbolic(value: Any) -> bool:
    if type(value) in _CONCRETE_TYPES:  # the usual eager call: skip a failing hasattr lookup
        return False
    return isinstance(value, Tensor) or (hasattr(value, "_as_graph_tensor") and not isinstance(value, np.ndarray))


def _with_declared_shape(sig: SignatureSpec, key: str, t: Tensor, created: set[int]) -> Tensor:
    """Gives an output tensor the signature's declared shape where inference knows less (as TF Hub does).

    Only tensors this call created are refined; an output that is one of the caller's own tensors
    (an input passed through) or a shared variable read keeps its shape.
    """
    declared = sig.outputs[key].shape
    merged = merge_shapes(t.shape, declared)
    if merged is False:
        raise SignatureError(
            f"Signature {sig.name!r} output {key!r} is declared with shape {format_shape(declared)}, but the tensor "
            f"{t.name!r} computed from the given inputs has shape {format_shape(t.shape)}."
        )
    if merged != t.shape and id(t.node) in created:
        t.shape = merged
    return t


class _FastCall:
    """A one-input signature's plan, and the input shapes already checked against it (``Module.__call__``): for a
    bare array, or for a dict of the one input under ``name``, whose results go out under ``out_keys``."""

    __slots__ = ("dtype", "name", "out_keys", "plan", "shapes")

    def __init__(self, plan: Plan, dtype: np.dtype, name: str | None = None, out_keys: tuple[str, ...] = ()) -> None:
        self.plan = plan
        self.dtype = dtype
        self.name = name
        self.out_keys = out_keys
        self.shapes: set[tuple[int, ...]] = set()


class Module:
    """A module ready to run: a spec (graph variants, signatures) plus its own variable values.

    Args:
        spec: a :class:`ModuleSpec`, a module directory, or a handle the hub layer resolves.
        trainable: whether graphs using the module may train its variables (see ``__call__``).
        name: name scope of the module's nodes and variables when used inside a graph.
        tags: selects the graph variant (default: the empty tag set).

    Made inside ``with graph.as_default():``, the module is placed in that graph at once, as in
    TensorFlow 1: its scope is claimed there (an active ``variable_scope`` prefixes its variables'
    names), its variables are bound and added to ``GLOBAL_VARIABLES`` (and to ``TRAINABLE_VARIABLES``
    when ``trainable=True``).

    Raises:
        SignatureError: no variant has these tags (the error lists the available tag sets).
        FormatError: the module on disk is invalid.

    >>> import hubkit as hk
    >>> def module_fn():
    ...     x = hk.placeholder(hk.float32, [None, 2], name="x")
    ...     hk.add_signature(inputs=x, outputs=x * 3.0)
    >>> m = hk.Module(hk.create_module_spec(module_fn))
    >>> m([[1.0, 2.0]])
    array([[3., 6.]], dtype=float32)
    """

    def __init__(
        self,
        spec: ModuleSpec | str | os.PathLike,
        trainable: bool = False,
        name: str = "module",
        tags: Any = None,
    ) -> None:
        if isinstance(spec, (str, os.PathLike)):
            spec = load_module_spec(spec)
        elif not isinstance(spec, ModuleSpec):
            raise ResolveError(f"Module() needs a ModuleSpec, a module directory or a handle, got {type(spec).__name__}.")
        if not isinstance(name, str) or not _MODULE_NAME.match(name):
            raise GraphError(f"Invalid module name {name!r}; use letters, digits, '_', '.' and '-'.")
        self._spec = spec
        self._trainable = bool(trainable)
        self._name = name
        self._tags = normalize_tags(tags)
        self._variant: Variant = spec._variant(self._tags)
        self._variables = self._make_variables()
        self._placement: list[str | None] = [None]  # the scope of the first graph placement, shared by with_tags
        self._build_eager_graph()
        graph = entered_graph()
        if graph is not None:  # as TF1: made inside a graph, the module's variables join it now
            self._place(graph)
            if not self._trainable:
                for var in self._variables.values():
                    register_in_collections(graph, var)  # GLOBAL_VARIABLES only: they are not trainable

    def with_tags(self, tags: Any) -> Module:
        """The same module (same ``Variable`` objects, name and trainability) running another variant.

        A layer that trains a module's ``{"train"}`` variant and serves its default variant uses
        ``m.with_tags(set())`` so both read and update one set of weights.

        Raises:
            SignatureError: no variant has these tags.
        """
        other = object.__new__(Module)
        other._spec, other._trainable, other._name = self._spec, self._trainable, self._name
        other._tags = normalize_tags(tags)
        other._variant = self._spec._variant(other._tags)
        other._variables = self._variables
        other._placement = self._placement
        other._build_eager_graph()
        return other

    # -- construction ----------------------------------------------------------------------------
    def _build_eager_graph(self) -> None:
        """Imports the variant into the module's private graph (rechecking every node) for eager calls."""
        self._graph = Graph()
        self._eager_tensors = self._import(self._graph, prefix="", var_scope=None, only=None, symbolic=False).tensors
        try:
            check_graph(self._graph, require_bound_variables=True)
            self._check_declared_signatures()
        except GraphError as e:
            raise self._format_error(e) from None
        self._plans: dict[tuple[str, bool], tuple[Plan, tuple[str, ...], tuple[str, ...]]] = {}
        self._fast_calls: dict[Any, _FastCall] = {}  # by signature (a bare array), or (signature, as_dict)

    def _check_declared_signatures(self) -> None:
        """Every signature tensor's declared dtype and shape must agree with what the graph computes."""
        for sig in self._variant.signatures.values():
            for part, infos in (("input", sig.inputs), ("output", sig.outputs)):
                for key, info in sorted(infos.items()):
                    t = self._eager_tensors.get(info.name)
                    if t is None:  # a hand-edited or damaged graph.pb
                        raise GraphError(f"signature {sig.name!r} maps {part} {key!r} to the tensor {info.name!r}, "
                                         "which the graph does not have.")
                    if t.dtype is not info.dtype or merge_shapes(t.shape, info.shape) is False:
                        raise GraphError(
                            f"signature {sig.name!r} declares {part} {key!r} as {info.dtype.name} "
                            f"{format_shape(info.shape)}, but the graph computes {t.dtype.name} {format_shape(t.shape)}."
                        )

    def _format_error(self, e: GraphError) -> Exception:
        if self._spec.module_dir is None:
            return e
        return FormatError(f"{self._spec._location()}: {e}")

    def _make_variables(self) -> dict[str, Variable]:
        spec = self._spec
        stored = {}
        if spec.module_dir is not None and spec._store_entries:
            stored = map_tensors(os.path.join(spec.module_dir, VARIABLES_DIR), spec._store_entries)
        out = {}
        for name, info in sorted(spec.variables.items()):
            full = f"{self._name}/{name}"
            trainable = self._trainable and info.trainable
            if name in stored:
                var = Variable.from_array(stored[name], name=full, trainable=trainable)
                if var.dtype is not info.dtype or var.shape != tuple(info.shape):
                    raise FormatError(
                        f"{spec._location()}: the stored value of variable {name!r} is {var.dtype.name} "
                        f"{format_shape(var.shape)}, but the graph declares {info.dtype.name} {format_shape(info.shape)}."
                    )
            else:
                value, initializer = spec._initial_value(name)
                if value is not None:
                    var = Variable(value, name=full, trainable=trainable, dtype=info.dtype)
                elif initializer is not None:
                    var = Variable(initializer=initializer, shape=info.shape, dtype=info.dtype, name=full,
                                   trainable=trainable)
                else:
                    raise FormatError(f"{spec._location()}: the variable {name!r} has neither a value nor an initializer.")
            out[name] = var
        return out

    def _bind_variable(self, graph: Graph, node_name: str, spec: NodeSpec, symbolic: bool) -> Tensor:
        """The tensor reading this module's variable ``spec.name`` in ``graph`` (created once per graph)."""
        var = self._variables[spec.name]
        if id(var) in runtime_state(graph).read_tensors:
            return bind_variable(graph, var)
        t = bind_variable(graph, var, node_name, initializer=spec.attrs.get("initializer"))
        if symbolic and self._trainable:
            register_in_collections(graph, var)
        return t

    def _import(self, graph: Graph, *, prefix: str, var_scope: str | None, only: set[str] | None, symbolic: bool,
                input_map: dict[str, Tensor] | None = None):
        def bind(spec: NodeSpec) -> Tensor:
            node_name = spec.name if var_scope is None else f"{var_scope}/{spec.name}"
            return self._bind_variable(graph, node_name, spec, symbolic)

        try:
            return import_nodes(self._variant.nodes, graph, prefix=prefix, input_map=input_map, bind_variable=bind,
                                only=only)
        except GraphError as e:
            raise (self._format_error(e) if not symbolic else e) from None

    # -- calling ---------------------------------------------------------------------------------
    def __call__(self, inputs: Any = None, *, signature: str | None = None, as_dict: bool | None = None) -> Any:
        """Runs a signature now (NumPy values) or adds it to the graph being built (hubkit tensors).

        Args:
            inputs: a dict keyed by input name, or a single value for a one-input signature.
            signature: signature name (default ``"default"``).
            as_dict: return every output in a dict instead of ``outputs["default"]``.

        Returns:
            NumPy arrays (eager) or tensors (symbolic): ``outputs["default"]``, or the dict of outputs.

        Raises:
            SignatureError: unknown signature, inputs that do not match it (missing and extra keys are
                listed), values of the wrong dtype or shape, or no ``default`` output without ``as_dict``.

        A signature without inputs called inside ``with graph.as_default()`` is used symbolically too.
        Used symbolically, the signature's computation is added to the tensors' graph under a fresh
        name scope, reading this module's variables (shared by every call). With ``trainable=True``
        the variables join the graph's GLOBAL_VARIABLES and TRAINABLE_VARIABLES collections, and the
        module's REGULARIZATION_LOSSES and UPDATE_OPS join the graph's.
        """
        if type(inputs) is np.ndarray and not as_dict:
            fast = self._fast_calls.get(signature)
            if fast is not None and inputs.shape in fast.shapes and inputs.dtype == fast.dtype:
                return fast.plan.run([inputs])[0]  # at 1-2 rows through dense layers: runtime/dense_chain.py
        elif type(inputs) is dict and len(inputs) == 1:  # {name: array}, as onnxruntime's callers pass it
            fast = self._fast_calls.get((signature, bool(as_dict)))
            if fast is not None:
                ((name, value),) = inputs.items()
                if name == fast.name and type(value) is np.ndarray and value.shape in fast.shapes and (
                    value.dtype == fast.dtype
                ):
                    by_key = dict(zip(fast.out_keys, fast.plan.run([value])))
                    return by_key if as_dict else by_key["default"]
        sig = self._variant.signature(signature)
        packed = pack_inputs(sig, inputs)
        as_dict = bool(as_dict)
        if not as_dict and "default" not in public_infos(sig.outputs):
            raise SignatureError(
                f"Signature {sig.name!r} has no 'default' output; pass as_dict=True to get its outputs "
                f"{sorted(sig.outputs)}."
            )
        if any(_is_symbolic(v) for v in packed.values()) or (not packed and entered_graph() is not None):
            # A signature without inputs called inside ``with graph.as_default()`` joins that graph,
            # like one called on tensors: it can be trained, and its UPDATE_OPS join the graph's.
            return self._call_symbolic(sig, packed, as_dict)
        entry = self._plans.get((sig.name, as_dict))
        if entry is None:
            entry = self._compile(sig, as_dict)
        plan, in_keys, out_keys = entry
        arrays = convert_eager_inputs(sig, in_keys, packed)
        results = plan.run(arrays)
        if len(arrays) == 1 and arrays[0] is inputs and not as_dict:
            self._remember_fast_call(signature, sig, plan, inputs.shape)
        elif len(arrays) == 1 and type(inputs) is dict and len(inputs) == 1 and arrays[0] is next(iter(inputs.values())):
            self._remember_fast_call((signature, as_dict), sig, plan, arrays[0].shape, next(iter(inputs)), out_keys,
                                     as_dict)
        grouped = group_composite_outputs(sig, dict(zip(out_keys, results)))
        return grouped if as_dict else grouped["default"]

    def _remember_fast_call(self, key: Any, sig: SignatureSpec, plan: Plan, shape: tuple, name: str | None = None,
                            out_keys: tuple[str, ...] = (), as_dict: bool = False) -> None:
        """Lets later calls with one array of this dtype and shape (bare, or in a dict under ``name``) skip packing
        and checking (it passed both)."""
        fast = self._fast_calls.get(key)
        if fast is None or fast.plan is not plan or fast.name != name:
            if len(sig.inputs) != 1 or ("default" not in sig.outputs and not as_dict) or composites(sig.outputs):
                return
            dtype = next(iter(sig.inputs.values())).dtype
            if dtype.name == "string":  # a string array of the right dtype may still hold non-strings
                return
            fast = self._fast_calls[key] = _FastCall(plan, dtype.np_dtype, name, tuple(out_keys))
        if len(fast.shapes) >= 64:
            fast.shapes.clear()
        fast.shapes.add(shape)

    def _compile(self, sig: SignatureSpec, as_dict: bool):
        out_keys = output_keys(sig, as_dict)
        in_keys = tuple(sig.inputs)
        fetches = [self._eager_tensors[sig.outputs[k].name] for k in out_keys]
        feeds = [self._eager_tensors[sig.inputs[k].name] for k in in_keys]
        entry = (compile_plan(self._graph, list(fetches), feeds), in_keys, out_keys)
        self._plans[(sig.name, as_dict)] = entry
        return entry

    def _name_variables(self, scope: str) -> None:
        """Names the variables after the scope the module first takes in a graph (``a_1/w``), as TF does."""
        if self._placement[0] is not None:
            return
        self._placement[0] = scope
        for rel, var in self._variables.items():
            var.name = f"{scope}/{rel}"

    def _place(self, graph: Graph) -> tuple[tuple[Module, str], bool]:
        """The module's (module, variable scope) in ``graph``, placing it there first if need be."""
        modules = graph.state_for(_PlacedModules)
        known = modules.get(id(self))
        if known is not None and known[0] is self:
            return known, False
        # Called by a layer of its name (a HubLayer, whose scope may be made unique as "name_1"), the
        # layer's scope is the module's: no doubled "hub_layer/hub_layer" segment.
        current = graph.current_scope
        last = current.rsplit("/", 1)[-1]
        same = last == self._name or (last.startswith(self._name + "_") and last[len(self._name) + 1:].isdigit())
        scope = current if same else claim_scope_name(graph, self._name)
        self._name_variables(scope)
        known = modules[id(self)] = (self, scope)
        # Every variable of the variant is bound at placement, in name order, so the graph's
        # collections list them all whatever signature is called first.
        for spec in sorted((n for n in self._variant.nodes if n.op == "Variable"), key=lambda n: n.name):
            self._bind_variable(graph, f"{scope}/{spec.name}", spec, symbolic=True)
        return known, True

    def _call_symbolic(self, sig: SignatureSpec, packed: dict[str, Any], as_dict: bool):
        graph = next((v.graph for v in packed.values() if isinstance(v, Tensor)), None) or get_default_graph()
        tensors = {k: convert_symbolic_input(sig, k, v, graph) for k, v in packed.items()}
        known, placed_now = self._place(graph)
        called = graph.state_for(_CalledModules)
        first = id(self) not in called or placed_now
        called.add(id(self))
        scope = known[1] if first else graph.unique_name(self._name)
        input_map = {sig.inputs[k].name: t for k, t in tensors.items()}
        out_keys = output_keys(sig, as_dict)
        targets = [sig.outputs[k].name for k in out_keys]
        update_items: list[tuple[str, str]] = []
        loss_items: list[tuple[str, str]] = []
        if self._trainable:
            update_items = self._reachable(GraphKeys.UPDATE_OPS, input_map)
            if first:
                loss_items = self._reachable(GraphKeys.REGULARIZATION_LOSSES, input_map)
        only = nodes_needed(self._variant.nodes, targets + [n for _, n in update_items + loss_items], stop_at=input_map)
        result = self._import(graph, prefix=scope + "/", var_scope=known[1], only=only, symbolic=True,
                              input_map=input_map)
        for kind, name in update_items:
            graph.add_to_collection(GraphKeys.UPDATE_OPS, result.nodes[name] if kind == "node" else result.tensors[name])
        for kind, name in loss_items:
            if kind == "tensor":
                graph.add_to_collection(GraphKeys.REGULARIZATION_LOSSES, result.tensors[name])
        for node in result.nodes.values():
            if node.op == "AssetPath":
                graph.add_to_collection(ASSET_FILEPATHS, node.outputs[0])
        created = {id(n) for n in result.nodes.values() if n.op != "Variable"}
        outputs = {k: _with_declared_shape(sig, k, result.tensor(sig.outputs[k].name), created) for k in out_keys}
        grouped = group_composite_outputs(sig, outputs)
        return grouped if as_dict else grouped["default"]

    def _reachable(self, key: str, input_map: dict[str, Tensor]) -> list[tuple[str, str]]:
        """Items of a collection computable from the mapped inputs (no other placeholder needed)."""
        nodes = {n.name: n for n in self._variant.nodes}
        out = []
        for kind, name in self._variant.collections.get(key, ()):
            if kind == "variable":
                continue
            needed = nodes_needed(self._variant.nodes, [name], stop_at=input_map)
            if not any(nodes[n].op == "Placeholder" for n in needed):
                out.append((kind, name))
        return out

    # -- introspection ---------------------------------------------------------------------------
    def get_signature_names(self) -> list[str]:
        """Signature names of the selected variant, sorted."""
        return sorted(self._variant.signatures)

    def get_input_info_dict(self, signature: str | None = None) -> dict[str, TensorInfo]:
        """Input name -> :class:`TensorInfo` of a signature (default ``"default"``)."""
        return public_infos(self._variant.signature(signature).inputs)

    def get_output_info_dict(self, signature: str | None = None) -> dict[str, TensorInfo]:
        """Output name -> :class:`TensorInfo` of a signature."""
        return public_infos(self._variant.signature(signature).outputs)

    def get_attached_message(self, key: str, message_type: Any, required: bool = False):
        """The message attached under ``key`` to the selected variant (see ``ModuleSpec.get_attached_message``)."""
        return self._spec.get_attached_message(key, message_type, tags=self._tags, required=required)

    def _checkpoint_children(self) -> list[tuple[str, Any]]:
        """Checkpoints track a module through its variables, keyed by module-relative name (as ``HubLayer``)."""
        return list(self._variables.items())

    @property
    def variables(self) -> list[Variable]:
        """Every variable of the module, in ``variable_map`` order (a partitioned variable's parts in order)."""
        return [v for entry in self.variable_map.values() for v in (entry if isinstance(entry, list) else [entry])]

    @property
    def variable_map(self) -> dict[str, Any]:
        """Module-relative name (``"dense/kernel"``) -> Variable, sorted by name; a partitioned variable
        (parts ``<name>/part_<i>``) maps to the list of its parts, as in TensorFlow Hub."""
        return group_partitions(self._variables)

    @property
    def flat_variable_map(self) -> dict[str, Variable]:
        """Module-relative name -> Variable for every variable, a partitioned one's parts each under its own
        name (``emb/part_0``): the keys checkpoints and exports use."""
        return dict(self._variables)

    @property
    def trainable_variables(self) -> list[Variable]:
        """The variables optimizers may update: none unless ``trainable=True``."""
        return [v for v in self._variables.values() if v.trainable]

    @property
    def spec(self) -> ModuleSpec:
        return self._spec

    @property
    def tags(self) -> frozenset[str]:
        return self._tags

    @property
    def trainable(self) -> bool:
        return self._trainable

    @property
    def name(self) -> str:
        return self._name

    def export(self, path: str | os.PathLike, session: Any = None, *, max_shard_bytes: int | None = None) -> None:
        """Writes the module (every variant, current variable values, assets) to the directory ``path``.

        The files are written into a temporary directory next to ``path`` and renamed into place;
        the marker is written last. Exporting the same module twice gives byte-identical files.
        Variables larger than ``max_shard_bytes`` in total (default 2 GiB) are split in shards.
        ``session`` is accepted (and ignored: variables hold their own values) so TF1's
        ``m.export(path, sess)`` runs unchanged.

        Raises:
            FormatError: ``path`` exists and is not an empty directory, or a value cannot be stored.
        """
        from hubkit.module.exporter import export_module

        export_module(self._spec, self._variables, path, max_shard_bytes)

    def __repr__(self) -> str:
        where = self._spec.module_dir or "create_module_spec"
        tags = "{" + ", ".join(repr(t) for t in sorted(self._tags)) + "}" if self._tags else "set()"
        lines = [f"<hubkit.Module {self._name!r} from {where!r} tags={tags} trainable={self._trainable} "
                 f"variables={len(self._variables)}"]
        lines += [f"  {self._variant.signatures[s].describe()}" for s in sorted(self._variant.signatures)]
        return "\n".join(lines) + ">"

