"""TF1 raw control flow (control flow v1) -> hubkit's ``While`` and ``If`` nodes.

A ``tf.compat.v1.while_loop`` built in graph mode is a *frame*: ``Enter`` nodes (one ``frame_name``) bring
values in (``is_constant`` ones are loop invariants), each loop variable is a ``Merge`` of its ``Enter``
and its ``NextIteration``, a ``Switch`` on the ``LoopCond`` routes it to the body (output 1) or to its
``Exit`` (output 0). A ``tf.compat.v1.cond`` is a ``Merge`` of two branches whose values come in through
``Switch`` nodes on the predicate (output 1 feeds the true branch, output 0 the false one).

Both are rebuilt as hubkit's own control flow (:mod:`hubkit.ops.control_flow`): a frame becomes one
``While`` node whose ``cond`` function computes the ``LoopCond`` input from the ``Merge`` values and whose
``body`` function computes the ``NextIteration`` inputs from the ``Switch`` outputs; a cond ``Merge``
becomes an ``If`` node over its two branches (the Merges of one ``tf.cond`` returning several values share one
``If``, so each branch runs once). The nodes inside are translated by the ordinary
translators into the functions (a *scope*); tensors of the enclosing scope that they read (the loop
invariants, the values a cond switches) become the functions' captured inputs, so gradients reach them.
Loops and conds nest: a frame or cond met while translating a function is translated into that function.
Only the data dependencies count: the ``^pivot`` control inputs that TF gives constants inside a
context are dropped, as everywhere in the importer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hubkit.errors import FormatError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.attrs import decode_attrs, encode_attrs
from hubkit.graph import DType, int32
from hubkit.graph.walk import dependencies_first
from hubkit.importers.tf1.tensor_array import HANDLE_OPS
from hubkit.importers.tf1.translate import ASSIGN_OPS, TRANSLATORS, Emitter
from hubkit.ops.importer import split_tensor_name

if TYPE_CHECKING:
    from hubkit.importers.tf1.graph import GraphTranslator, _Node

__all__ = ["CONTROL_FLOW_TF_OPS", "ControlFlow"]

ENTER_OPS = ("Enter", "RefEnter")
EXIT_OPS = ("Exit", "RefExit")
MERGE_OPS = ("Merge", "RefMerge")
SWITCH_OPS = ("Switch", "RefSwitch")
NEXT_OPS = ("NextIteration", "RefNextIteration")
CONTROL_FLOW_TF_OPS = frozenset({*ENTER_OPS, *EXIT_OPS, *MERGE_OPS, *SWITCH_OPS, *NEXT_OPS, "LoopCond"})
# Read through the enclosing scope when a function reads them directly (TF itself would need an Enter/Switch).
_OUTSIDE_OPS = ("Placeholder", "PlaceholderWithDefault", "VarHandleOp", "VariableV2", "Variable")
_VARIABLE_OPS = ("VarHandleOp", "VariableV2", "Variable")


@dataclass
class _Loop:
    frame: str
    prefix: str  # hubkit node names of the loop start with it
    merges: list[str]
    enters: list[str]  # the loop variables' Enter nodes, as merges
    switches: list[str]
    nexts: list[str]
    exits: dict[str, int]  # Exit node -> loop variable
    loop_cond: str
    constants: list[str]  # the loop invariants' Enter nodes
    external: list[str]  # TF tensors the loop reads from its enclosing scope


@dataclass
class _Cond:
    merge: str
    pred: str  # TF tensor
    switches: list[str]
    then_input: int  # which Merge input the true branch computes
    external: list[str]


@dataclass
class _CondGroup:
    """The Merges of one ``tf.cond`` call (one per output: same name scope, same predicate), built as one ``If``
    with one output per Merge, so each branch runs once however many values the cond returns."""

    merges: list[str]
    conds: list[_Cond]
    pred: str
    switches: list[str]
    external: list[str]


@dataclass
class _Scope:
    """One function being built: its nodes, aliases, placeholders, and captured tensors of the parent."""

    parent: _Scope | None
    prefix: str
    loop: _Loop | None = None
    kind: str = ""  # "cond" or "body" (a loop's functions), "then"/"else" (a cond's branches)
    cond: _CondGroup | None = None
    out_nodes: list = field(default_factory=list)
    tensor_map: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # placeholder tensors of the loop variables
    captures: list[str] = field(default_factory=list)  # TF tensors of the parent scope
    capture_ph: dict[str, str] = field(default_factory=dict)
    capture_dtype: dict[str, DType] = field(default_factory=dict)
    done_loops: dict[str, str] = field(default_factory=dict)  # frame -> While node name
    done_conds: set[str] = field(default_factory=set)  # If nodes built (named by a group's first Merge)


class ControlFlow:
    """Finds the frames and conds of one TF graph and translates them (one per :class:`GraphTranslator`)."""

    def __init__(self, t: GraphTranslator) -> None:
        self.t = t
        self.consumers: dict[str, list[str]] = {}
        self.frames: dict[str, list[str]] = {}
        for node in t.nodes.values():
            for inp in node.inputs:
                self.consumers.setdefault(split_tensor_name(inp)[0], []).append(node.name)
            if node.op in ENTER_OPS:
                self.frames.setdefault(str(node.attrs.get("frame_name", "")), []).append(node.name)
        self._loops: dict[str, _Loop] = {}
        self._conds: dict[str, _Cond] = {}
        self._groups: dict[str, _CondGroup] = {}
        self._merges_by_scope: dict[str, list[str]] | None = None
        self._top_conds: set[str] = set()
        self._top_loops: dict[str, str] = {}  # frame -> While node name, at the top level
        self._cap_dtypes: dict[str, DType] = {}
        self.scope: _Scope | None = None  # the function being built; None at the top level

    def where(self, name: str) -> str:
        return f"{self.t.where}: {self.t.nodes[name].op} node {name!r}"

    def _node(self, tensor: str) -> _Node:
        return self.t.nodes[split_tensor_name(tensor)[0]]

    # -- analysis ---------------------------------------------------------------------------------------
    def external_inputs(self, node: _Node) -> list[str] | None:
        """The TF tensors an Exit's loop or a cond Merge reads from outside; None for other nodes."""
        if node.op in EXIT_OPS:
            return self.loop(node.name).external
        if node.op in MERGE_OPS and not self.is_loop_merge(node):
            return self.group(node.name).external
        return None

    def is_loop_merge(self, node: _Node) -> bool:
        return any(self._node(i).op in NEXT_OPS or self._node(i).op in ENTER_OPS for i in node.inputs)

    def loop(self, exit_name: str) -> _Loop:
        """The loop an Exit node leaves."""
        where = self.where(exit_name)
        switch = self._node(self.t.nodes[exit_name].inputs[0])
        if switch.op not in SWITCH_OPS or len(switch.inputs) != 2:
            raise FormatError(f"{where} does not read a Switch; it is not a TF1 while loop's exit.")
        merge = self._node(switch.inputs[0])
        enter = next((self._node(i) for i in merge.inputs if self._node(i).op in ENTER_OPS), None)
        if merge.op not in MERGE_OPS or enter is None:
            raise FormatError(f"{where}: its Switch does not read a Merge of an Enter; it is not a TF1 while loop.")
        frame = str(enter.attrs.get("frame_name", ""))
        cached = self._loops.get(frame)
        if cached is not None:
            return cached
        loop_cond = split_tensor_name(switch.inputs[1])[0]
        if self.t.nodes[loop_cond].op != "LoopCond":
            raise FormatError(f"{where}: its Switch is not driven by a LoopCond.")
        merges: list[str] = []
        enters: list[str] = []
        switches: list[str] = []
        nexts: list[str] = []
        constants: list[str] = []
        exits: dict[str, int] = {}
        for name in self.frames.get(frame, []):
            node = self.t.nodes[name]
            if node.attrs.get("is_constant"):
                if self.consumers.get(name):
                    constants.append(name)
                continue
            m = next((c for c in self.consumers.get(name, []) if self.t.nodes[c].op in MERGE_OPS), None)
            if m is None:
                raise FormatError(f"{self.where(name)} enters loop {frame!r} but no Merge reads it.")
            mnode = self.t.nodes[m]
            nxt = [i for i in mnode.inputs if self._node(i).op in NEXT_OPS]
            sw = [c for c in self.consumers.get(m, []) if self.t.nodes[c].op in SWITCH_OPS
                  and split_tensor_name(self.t.nodes[c].inputs[1])[0] == loop_cond]
            if len(mnode.inputs) != 2 or len(nxt) != 1 or len(sw) != 1:
                raise FormatError(f"{self.where(m)} is not a loop variable's Merge of one Enter and one NextIteration "
                                  f"switched by {loop_cond!r}.")
            i = len(merges)
            merges.append(m)
            enters.append(name)
            switches.append(sw[0])
            nexts.append(split_tensor_name(nxt[0])[0])
            for c in self.consumers.get(sw[0], []):
                if self.t.nodes[c].op in EXIT_OPS:
                    exits[c] = i
        if exit_name not in exits:
            raise FormatError(f"{where} leaves loop {frame!r} but is not one of its variables' exits.")
        external = [self.t.nodes[n].inputs[0] for n in enters + constants]
        prefix = frame[: -len("/while_context")] if frame.endswith("/while_context") else frame
        loop = _Loop(frame, prefix or "while", merges, enters, switches, nexts, exits, loop_cond, constants, external)
        self._loops[frame] = loop
        return loop

    def _pred_source(self, tensor: str) -> str:
        """The predicate tensor behind the Identity chain TF puts before it (``cond/pred_id``)."""
        for _ in range(1000):
            node = self._node(tensor)
            if node.op != "Identity" or not node.inputs:
                break
            tensor = node.inputs[0]
        return tensor

    def _switches_behind(self, tensor: str) -> dict[str, set[int]]:
        """The Switch nodes a branch value depends on (through data and control edges), with the outputs used;
        nested conds and loops are passed over through their external inputs."""
        found: dict[str, set[int]] = {}
        stack: list[tuple[str, int]] = [split_tensor_name(tensor)]
        seen: set[str] = set()
        while stack:
            name, port = stack.pop()
            node = self.t.nodes[name]
            if node.op in SWITCH_OPS:
                found.setdefault(name, set()).add(port)
                continue
            if name in seen:
                continue
            seen.add(name)
            ext = self.external_inputs(node)
            if ext is not None:
                stack.extend(split_tensor_name(x) for x in ext)
                continue
            stack.extend(split_tensor_name(x) for x in node.inputs)
            stack.extend((c, -1) for c in node.control)
        return found

    def cond(self, merge_name: str) -> _Cond:
        """The cond a (non-loop) Merge node joins."""
        cached = self._conds.get(merge_name)
        if cached is not None:
            return cached
        where = self.where(merge_name)
        merge = self.t.nodes[merge_name]
        if len(merge.inputs) != 2:
            raise FormatError(f"{where} joins {len(merge.inputs)} values; a TF1 cond joins two.")
        behind = [self._switches_behind(i) for i in merge.inputs]
        preds = {self._pred_source(self.t.nodes[s].inputs[1]) for b in behind for s in b}
        ports = [set().union(*b.values()) for b in behind]
        if len(preds) != 1 or any(len(p) != 1 for p in ports) or ports[0] == ports[1]:
            raise FormatError(f"{where} is not the Merge of a TF1 cond: its inputs do not come from the true and "
                              "false outputs of Switch nodes on one predicate.")
        switches = sorted({s for b in behind for s in b})
        pred = preds.pop()
        external = [self.t.nodes[s].inputs[0] for s in switches] + [pred]
        c = _Cond(merge_name, pred, switches, 0 if 1 in ports[0] else 1, external)
        self._conds[merge_name] = c
        return c

    def group(self, merge_name: str) -> _CondGroup:
        """The Merges translated together with ``merge_name``: the needed cond Merges of its name scope on its
        predicate (a ``tf.cond`` returning several values has one Merge per value)."""
        cached = self._groups.get(merge_name)
        if cached is not None:
            return cached
        first = self.cond(merge_name)
        if self._merges_by_scope is None:
            self._merges_by_scope = {}
            for name, node in self.t.nodes.items():
                if node.op in MERGE_OPS:
                    self._merges_by_scope.setdefault(name.rpartition("/")[0], []).append(name)
        reached = getattr(self.t, "reached", None) or {merge_name}
        members = []
        for name in sorted(self._merges_by_scope.get(merge_name.rpartition("/")[0], [])):
            if name != merge_name and (name not in reached or self.is_loop_merge(self.t.nodes[name])):
                continue
            try:
                c = self.cond(name)
            except FormatError:
                continue
            if c.pred == first.pred:
                members.append(c)
        switches = sorted({s for c in members for s in c.switches})
        external = list(dict.fromkeys(x for c in members for x in c.external))
        group = _CondGroup([c.merge for c in members], members, first.pred, switches, external)
        for c in members:
            self._groups[c.merge] = group
        return group

    # -- scopes ----------------------------------------------------------------------------------------
    def _leaf(self, scope: _Scope, tensor: str) -> str | None:
        """The function tensor standing for ``tensor`` when it is one of the scope's inputs (else None)."""
        name, port = split_tensor_name(tensor)
        node = self.t.nodes[name]
        loop = scope.loop
        if loop is not None:
            if name in loop.merges and port == 0:
                return scope.args[loop.merges.index(name)]
            if scope.kind == "body" and name in loop.switches:
                if port != 1:
                    raise FormatError(f"{self.where(name)}: the loop body reads its exit output.")
                return scope.args[loop.switches.index(name)]
            if name in loop.constants:
                return self._capture(scope, node.inputs[0], self._leaf_dtype(node))
        elif scope.cond is not None and name in scope.cond.switches:
            want = 1 if scope.kind == "then" else 0
            if port != want:
                raise FormatError(f"{self.where(name)}: the {scope.kind} branch reads the other branch's output.")
            return self._capture(scope, node.inputs[0], self._leaf_dtype(node))
        if node.op in _OUTSIDE_OPS and scope.parent is not None:
            return self._capture(scope, tensor, self._leaf_dtype(node, tensor_node=True))
        return None

    def _is_leaf_node(self, scope: _Scope, name: str) -> bool:
        loop, node = scope.loop, self.t.nodes[name]
        if loop is not None and (name in loop.merges or name in loop.constants
                                 or (scope.kind == "body" and name in loop.switches)):
            return True
        if scope.cond is not None and name in scope.cond.switches:
            return True
        return node.op in _OUTSIDE_OPS

    def _leaf_dtype(self, node: _Node, tensor_node: bool = False) -> DType:
        """The hubkit dtype of the value an Enter/Switch passes on (a variable's value for a resource handle)."""
        for _ in range(1000):
            if node.op in _VARIABLE_OPS or node.op.startswith("Placeholder"):
                value = node.attrs.get("dtype")
            else:
                value = node.attrs.get("T")
            if isinstance(value, DType):
                return value
            if tensor_node or not node.inputs:
                break
            node = self._node(node.inputs[0])  # a resource handle: look through to its variable
        raise FormatError(f"{self.where(node.name)} passes a {node.attrs.get('T')!r} value into a loop or cond, which "
                          "hubkit cannot carry (only variables are read through resource handles).")

    def _capture(self, scope: _Scope, tensor: str, dtype: DType) -> str:
        ph = scope.capture_ph.get(tensor)
        if ph is None:
            ph = f"{scope.prefix}/_hk_cap{len(scope.captures)}"
            scope.captures.append(tensor)
            scope.capture_ph[tensor] = ph + ":0"
            scope.capture_dtype[tensor] = dtype
            scope.out_nodes.append(_placeholder_node(ph, dtype))
            ph += ":0"
        return ph

    def resolve(self, tensor: str) -> str:
        """The hubkit tensor for a TF tensor in the scope being built."""
        scope = self.scope
        if scope is None:
            return self.t.tensor_map.get(tensor, tensor)
        leaf = self._leaf(scope, tensor)
        if leaf is not None:
            return leaf
        return scope.tensor_map.get(tensor, tensor)

    def _translate_in(self, scope: _Scope, roots: list[str]) -> list[str]:
        """Translates what ``roots`` need into ``scope``; returns their hubkit tensors there."""
        saved = (self.scope, self.t.out_nodes, self.t.tensor_map)
        self.scope, self.t.out_nodes, self.t.tensor_map = scope, scope.out_nodes, scope.tensor_map
        try:
            for name in self._order(scope, [split_tensor_name(r)[0] for r in roots]):
                node = self.t.nodes[name]
                if node.op in ASSIGN_OPS:
                    raise FormatError(f"{self.where(name)} assigns a variable inside a TF1 loop or cond; hubkit's "
                                      "loop and branch functions are pure, so it cannot run this module.")
                # a TensorArray op's handle (input 0) is not data and is left unresolved
                skip = 1 if node.op in HANDLE_OPS else 0
                inputs = [""] * skip + [self.resolve(i) for i in node.inputs[skip:]]
                e = Emitter(self.t, name, node.op, node.attrs, inputs, node.inputs)
                try:
                    TRANSLATORS[node.op](e)
                except KeyError:
                    raise FormatError(f"{self.t.where}: hubkit does not support the TF op {node.op!r} (node "
                                      f"{name!r}).") from None
                except (TypeError, ValueError) as err:
                    raise FormatError(f"{self.t.where}: {node.op} node {name!r} cannot be translated: {err}.") from None
            return [self.resolve(r) for r in roots]
        finally:
            self.scope, self.t.out_nodes, self.t.tensor_map = saved

    def _order(self, scope: _Scope, roots: list[str]) -> list[str]:
        def cycle(name: str) -> FormatError:
            return FormatError(f"{self.t.where} has a cycle through node {name!r} inside a loop or cond.")
        inner = [r for r in roots if not self._is_leaf_node(scope, r)]
        return dependencies_first(inner, lambda name: self._deps(scope, name), cycle)

    def _deps(self, scope: _Scope, name: str) -> list[str]:
        return [d for d in self.t._deps(self.t.nodes[name]) if not self._is_leaf_node(scope, d)]

    # -- emitting ------------------------------------------------------------------------------------------
    def _function(self, scope: _Scope, inputs: list[str], outputs: list[str], caps: list[str]) -> dict[str, Any]:
        """The Function data of a finished scope, with a placeholder for every capture in ``caps``."""
        for tensor in caps:
            if tensor not in scope.capture_ph:
                self._capture(scope, tensor, self._cap_dtypes[tensor])
        nodes = [{"name": nd.name, "op": nd.op, "inputs": list(nd.inputs), "control_inputs": [],
                  "attrs": decode_attrs(nd.attrs)} for nd in scope.out_nodes]
        return {"nodes": nodes, "inputs": inputs + [scope.capture_ph[c] for c in caps], "outputs": outputs}

    def _unify(self, *scopes: _Scope) -> list[str]:
        caps: list[str] = []
        for s in scopes:
            for c in s.captures:
                if c not in caps:
                    caps.append(c)
                    self._cap_dtypes[c] = s.capture_dtype[c]
        return caps

    def translate_exit(self, e: Emitter) -> None:
        loop = self.loop(e.name)
        scope = self.scope
        done = scope.done_loops if scope is not None else self._top_loops
        node_name = done.get(loop.frame)
        if node_name is None:
            node_name = self._emit_loop(e, loop)
            done[loop.frame] = node_name
        e.alias(0, f"{node_name}:{loop.exits[e.name]}")

    def _emit_loop(self, e: Emitter, loop: _Loop) -> str:
        node_name = f"{loop.prefix}/_hk_while"
        dtypes = [self._leaf_dtype(self.t.nodes[m]) for m in loop.merges]
        scopes = []
        for kind in ("cond", "body"):
            s = _Scope(self.scope, f"{node_name}/{kind}", loop=loop, kind=kind)
            for i, dt in enumerate(dtypes):
                s.out_nodes.append(_placeholder_node(f"{s.prefix}/_hk_arg{i}", dt))
                s.args.append(f"{s.prefix}/_hk_arg{i}:0")
            scopes.append(s)
        cond_scope, body_scope = scopes
        cond_out = self._translate_in(cond_scope, [self.t.nodes[loop.loop_cond].inputs[0]])
        body_out = self._translate_in(body_scope, [self.t.nodes[n].inputs[0] for n in loop.nexts])
        caps = self._unify(cond_scope, body_scope)
        attrs = {"cond": self._function(cond_scope, cond_scope.args, cond_out, caps),
                 "body": self._function(body_scope, body_scope.args, body_out, caps),
                 "n_vars": len(loop.merges), "has_max": False}
        inits = [self.resolve(self.t.nodes[n].inputs[0]) for n in loop.enters]
        e.emit("While", inits + [self.resolve(c) for c in caps], attrs, name=node_name)
        return node_name

    def translate_merge(self, e: Emitter) -> None:
        node = self.t.nodes[e.name]
        if self.is_loop_merge(node):
            raise FormatError(f"{e.where()} is a loop variable read outside its loop.")
        g = self.group(e.name)
        if_name = g.merges[0]
        done = self.scope.done_conds if self.scope is not None else self._top_conds
        if if_name not in done:
            done.add(if_name)
            scopes = []
            for kind in ("then", "else"):
                s = _Scope(self.scope, f"{if_name}/_hk_{kind}", kind=kind, cond=g)
                roots = [self.t.nodes[c.merge].inputs[c.then_input if kind == "then" else 1 - c.then_input]
                         for c in g.conds]
                scopes.append((s, self._translate_in(s, roots)))
            caps = self._unify(*(s for s, _ in scopes))
            attrs = {"then_branch": self._function(scopes[0][0], [], scopes[0][1], caps),
                     "else_branch": self._function(scopes[1][0], [], scopes[1][1], caps)}
            e.emit("If", [self.resolve(g.pred)] + [self.resolve(x) for x in caps], attrs, name=if_name)
        k = g.merges.index(e.name)
        e.alias(0, f"{if_name}:{k}")
        if any(f"{e.name}:1" in self.t.nodes[n].inputs for n in self.consumers.get(e.name, [])):
            taken = self.resolve(g.pred)  # value_index: which input the Merge forwarded
            if g.conds[k].then_input == 0:
                taken = e.emit("LogicalNot", [taken], name=e.helper_name()) + ":0"
            e.alias(1, e.emit("Cast", [taken], {"dtype": int32}, name=e.helper_name()) + ":0")


def _placeholder_node(name: str, dtype: DType) -> pb.NodeDef:
    nd = pb.NodeDef(name=name, op="Placeholder")
    encode_attrs({"dtype": dtype, "shape": None}, nd.attrs)
    return nd


def control_flow_of(t: GraphTranslator) -> ControlFlow:
    cf = getattr(t, "_control_flow", None)
    if cf is None:
        cf = ControlFlow(t)
        t._control_flow = cf  # type: ignore[attr-defined]
    return cf


def _exit(e: Emitter) -> None:
    control_flow_of(e.t).translate_exit(e)


def _merge(e: Emitter) -> None:
    control_flow_of(e.t).translate_merge(e)


def _inside_only(e: Emitter) -> None:
    raise FormatError(f"{e.where()} is read outside the loop or cond it belongs to; hubkit translates TF1 loops "
                      "from their Exit nodes and conds from their Merge nodes.")


for _op in EXIT_OPS:
    TRANSLATORS[_op] = _exit
for _op in MERGE_OPS:
    TRANSLATORS[_op] = _merge
for _op in (*ENTER_OPS, *SWITCH_OPS, *NEXT_OPS, "LoopCond"):
    TRANSLATORS[_op] = _inside_only
