"""``create_module_spec``: runs ``module_fn`` once per tag set and captures each graph as a variant."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from hubkit.errors import GraphError, SignatureError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.attrs import encode_shape
from hubkit.format.graph_codec import encode_nodes, encode_tensor_info
from hubkit.graph import Graph, Node, Tensor, format_shape
from hubkit.module.assets import assign_filenames
from hubkit.module.builder import ModuleBuilder, ModuleBuildState
from hubkit.module.spec import CARRIED_COLLECTIONS, ModuleSpec, normalize_tags
from hubkit.ops.check import check_graph
from hubkit.ops.importer import nodes_needed

__all__ = ["create_module_spec"]


def _run_module_fn(module_fn: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[Graph, ModuleBuilder]:
    graph = Graph()
    builder = ModuleBuilder(graph)
    state = graph.state_for(ModuleBuildState)
    state.builder = builder
    try:
        with graph.as_default():
            module_fn(**kwargs)
    finally:
        state.builder = None
    return graph, builder


def _variable_node_names(graph: Graph) -> dict[int, str]:
    """id(Variable) -> name of the node reading it in ``graph``."""
    return {id(var): name for name, var in graph.variables.items()}


def _check_collections(graph: Graph, drop: set[str], tags: frozenset[str]) -> list[str]:
    kept = []
    for key in graph.collections:
        if key in drop:
            continue
        if key not in CARRIED_COLLECTIONS:
            raise GraphError(
                f"module_fn for tags {sorted(tags)} added to the collection {key!r}, which a module cannot carry "
                f"(carried: {sorted(CARRIED_COLLECTIONS)}); list it in drop_collections to leave it out."
            )
        kept.append(key)
    return kept


def _encode_collection(graph: Graph, key: str, out: pb.CollectionDef, var_names: dict[int, str]) -> None:
    out.key = key
    for item in graph.get_collection(key):
        entry = out.items.add()
        if isinstance(item, Tensor) and item.graph is graph:
            entry.tensor = item.name
        elif isinstance(item, Node) and item.graph is graph:
            entry.node = item.name
        elif id(item) in var_names:
            entry.variable = var_names[id(item)]
        else:
            raise GraphError(
                f"Collection {key!r} holds {item!r}, which is not a tensor, op or variable of the module's graph."
            )


def _encode_signatures(builder: ModuleBuilder, out: pb.GraphVariant, tags: frozenset[str]) -> None:
    graph = builder.graph
    nodes = [_spec_stub(n) for n in graph.nodes]
    for name in sorted(builder.signatures):
        ins, outs = builder.signatures[name]
        needed = nodes_needed(nodes, [t.name for t in outs.values()], stop_at=[t.name for t in ins.values()])
        own = {t.node.name for t in ins.values()}
        strays = sorted(n.name for n in graph.nodes if n.name in needed - own and n.op == "Placeholder")
        if strays:
            raise SignatureError(
                f"Signature {name!r} (tags {sorted(tags)}) computes its outputs from the placeholders {strays}, "
                f"which are not among its inputs {sorted(ins)}."
            )
        sd = out.signatures.add()
        sd.name = name
        for key, t in ins.items():
            encode_tensor_info(sd.inputs.add(), key, t.name, t.dtype, t.shape)
        for key, t in outs.items():
            encode_tensor_info(sd.outputs.add(), key, t.name, t.dtype, t.shape)


def _spec_stub(node: Node):
    from hubkit.ops.importer import NodeSpec

    return NodeSpec(node.name, node.op, tuple(t.name for t in node.inputs), tuple(c.name for c in node.control_inputs))


def _check_tags_and_args(module_fn: Callable[..., Any], tags_and_args: Any) -> list[tuple[frozenset[str], dict]]:
    """Validates ``[(tags, kwargs), ...]`` before any ``module_fn`` runs; returns normalized pairs."""
    if isinstance(tags_and_args, (str, bytes, Mapping)) or not isinstance(tags_and_args, Iterable):
        raise SignatureError(
            f"tags_and_args must be a list of (tags, kwargs) pairs, got {type(tags_and_args).__name__}."
        )
    try:
        signature = inspect.signature(module_fn)
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        signature = None
    out = []
    for item in tags_and_args:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise SignatureError(
                f"tags_and_args item {item!r} is not a (tags, kwargs) pair such as ({{'train'}}, {{}})."
            )
        tags, kwargs = item
        if tags is not None and not isinstance(tags, (set, frozenset, list, tuple, str)):
            raise SignatureError(
                f"tags_and_args item {item!r} has tags of type {type(tags).__name__}; use a set of strings."
            )
        try:
            tags = normalize_tags(tags)
        except SignatureError as e:
            raise SignatureError(f"tags_and_args item {item!r} has invalid tags: {e}") from None
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise SignatureError(
                f"tags_and_args item {item!r} has kwargs that are not a dict with string keys."
            )
        if signature is not None:
            try:
                signature.bind(**kwargs)
            except TypeError as e:
                raise SignatureError(
                    f"module_fn cannot be called with the kwargs {sorted(kwargs)} of tags {sorted(tags)}: {e}."
                ) from None
        out.append((tags, dict(kwargs)))
    return out


def create_module_spec(
    module_fn: Callable[..., Any],
    tags_and_args: Iterable[tuple[Iterable[str], dict[str, Any]]] | None = None,
    drop_collections: Iterable[str] | None = None,
) -> ModuleSpec:
    """Defines a module by running ``module_fn`` in a fresh graph once per tag set.

    ``module_fn`` builds the computation with placeholders, ops and layers, and declares its
    signatures with :func:`hubkit.add_signature`. It may call other modules: their graphs,
    variable values and assets become part of this module.

    Args:
        module_fn: called as ``module_fn(**kwargs)`` for each variant.
        tags_and_args: ``[(tags, kwargs), ...]``; default ``[(set(), {})]``. The empty tag set is
            the default variant.
        drop_collections: collection names to leave out instead of refusing them.

    Returns:
        A :class:`ModuleSpec` with initializers (and snapshots of inner modules' values), no values.

    Raises:
        SignatureError: ``module_fn`` is not callable, ``tags_and_args`` is not a list of
            ``(tags, kwargs)`` pairs (tags a set of strings, kwargs a dict ``module_fn`` accepts),
            duplicate tag sets, or a variant without signatures.
        GraphError: a collection the module cannot carry, an invalid graph, inconsistent variables.

    >>> import hubkit as hk
    >>> def module_fn(scale=1.0):
    ...     x = hk.placeholder(hk.float32, [None])
    ...     hk.add_signature(inputs=x, outputs=x * scale)
    >>> spec = hk.create_module_spec(module_fn, [(set(), {}), ({"double"}, {"scale": 2.0})])
    >>> spec.get_tags()
    [frozenset(), frozenset({'double'})]
    """
    if not callable(module_fn):
        raise SignatureError(f"create_module_spec() needs a callable module_fn, got {type(module_fn).__name__}.")
    pairs = [(frozenset(), {})] if tags_and_args is None else _check_tags_and_args(module_fn, tags_and_args)
    drop = set(drop_collections or ())
    seen: list[frozenset[str]] = []
    built = []
    for tags, kwargs in pairs:
        if tags in seen:
            raise SignatureError(f"tags_and_args lists the tag set {sorted(tags)} twice.")
        seen.append(tags)
        graph, builder = _run_module_fn(module_fn, kwargs)
        if not builder.signatures:
            raise SignatureError(f"module_fn for tags {sorted(tags)} added no signature; call hubkit.add_signature().")
        check_graph(graph)
        built.append((tags, graph, builder, _check_collections(graph, drop, tags)))
    # Asset names are assigned across all variants so one file gets one name everywhere.
    asset_nodes = [n for _, g, _, _ in built for n in g.nodes if n.op == "AssetPath"]
    names = assign_filenames((n.attrs["source"], n.attrs["filename"]) for n in asset_nodes)
    asset_sources = {names[os.path.realpath(n.attrs["source"])]: n.attrs["source"] for n in asset_nodes}

    def attrs_of(node: Node) -> dict[str, Any]:
        if node.op == "AssetPath":
            return {"filename": names[os.path.realpath(node.attrs["source"])]}
        return node.attrs

    proto = pb.ModuleGraph()
    variables: dict[str, tuple] = {}
    initial_values: dict[str, np.ndarray] = {}
    initializers: dict[str, Any] = {}
    for tags, graph, builder, keep in built:
        vp = proto.variants.add()
        vp.tags.extend(sorted(tags))
        encode_nodes(graph, vp, attrs_of)
        _encode_signatures(builder, vp, tags)
        var_names = _variable_node_names(graph)
        for key in keep:
            _encode_collection(graph, key, vp.collections.add(), var_names)
        for key in sorted(builder.attachments):
            at = vp.attachments.add()
            at.key = key
            at.message.CopyFrom(builder.attachments[key])
        for n in graph.nodes:
            if n.op == "AssetPath":
                vp.assets.add(node=n.name, filename=names[os.path.realpath(n.attrs["source"])])
            elif n.op == "Variable":
                _collect_variable(graph, n, variables, initial_values, initializers)
    for name in sorted(variables):
        dtype, shape, trainable = variables[name]
        vd = proto.variables.add(name=name, dtype=dtype.name, trainable=trainable)
        encode_shape(shape, vd.shape)
    return ModuleSpec(
        proto,
        where="create_module_spec",
        asset_sources=asset_sources,
        initial_values=initial_values,
        initializers=initializers,
    )


def _collect_variable(graph: Graph, node: Node, variables: dict, initial_values: dict, initializers: dict) -> None:
    """Records one Variable node: its declaration, and either its initializer or a snapshot of its value."""
    dtype, shape = node.attrs["dtype"], tuple(node.attrs["shape"])
    declared = (dtype, shape, bool(node.attrs.get("trainable", True)))
    previous = variables.get(node.name)
    if previous is not None:
        if previous[:2] != declared[:2]:
            raise GraphError(
                f"Variable {node.name!r} is {previous[0].name} {format_shape(previous[1])} in one variant and "
                f"{dtype.name} {format_shape(shape)} in another; variants must agree on shared variables."
            )
        return
    variables[node.name] = declared
    var = graph.variables.get(node.attrs.get("var_node", node.name))
    if var is None:
        raise GraphError(f"Variable node {node.name!r} has no variable bound to it.")
    # A variable that already has a value (one of an inner module) keeps it; others start from their
    # initializer each time the spec is instantiated.
    if var.is_initialized or var.initializer is None:
        initial_values[node.name] = np.array(var.value, copy=True)
    else:
        initializers[node.name] = var.initializer
