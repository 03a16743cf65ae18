"""What a module runs for a signature, step by step: the text behind ``hubkit info HANDLE --plan``.

:func:`describe_module_plan` prints the optimised plan (:func:`~hubkit.runtime.optimize.describe_plan`)
with, under each fused step, what it does in place: which epilogue (bias, activation) is applied to
the GEMM's or convolution's fresh output without another array, and whether a max-pool is applied
to each block. Given a batch size it also runs the plan once on zeros of that batch and prints each
step's output (shape, bytes), when its inputs are freed, and the peak of the bytes held by
intermediates at once::

    >>> import hubkit as hk
    >>> from hubkit.runtime.plan_report import describe_module_plan
    >>> def module_fn():
    ...     x = hk.placeholder(hk.float32, [None, 3], name="x")
    ...     hk.add_signature(inputs=x, outputs=hk.layers.dense(x, 2, activation="relu"))
    >>> print(describe_module_plan(hk.Module(hk.create_module_spec(module_fn)), batch=4))
    signature 'default': inputs ['x:0'] -> outputs ['dense/Relu:0']
    1 step (3 before the optimiser), 2 preloaded constants and variables
    the steps also run as a chain: np.dot at 1-2 rows (a float32 chain of 196,608+ weights with 2+ BLAS threads: split by columns over the worker), the tile layers in one call from 9 rows (runtime/dense_chain.py)
       0  MatMul+BiasAdd+Relu  (x:0, dense/kernel:0, dense/bias:0) -> dense/Relu:0
          GEMM into a fresh array, then bias + Relu on it in place (one pass)
          batch 4: writes float32 (4, 2), 32 B
    batch 4: intermediates peak at 0 B (outputs 32 B)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.errors import SignatureError
from hubkit.runtime.optimize import describe_signature_plan

__all__ = ["describe_module_plan"]

_ACT_NAMES = {0: None, 1: "Relu", 2: "Relu6"}


def _format_bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _in_place_note(fn: Any) -> str | None:
    """What a fused step writes in place, or None for a plain op's step."""
    note = getattr(fn, "note", None)  # a rewritten step that says what it runs (runtime/optimize_pool.py)
    if isinstance(note, str):
        return note
    nodes = getattr(fn, "nodes", None)
    if nodes is not None and hasattr(fn, "has_bias"):  # a FusedLinear
        act = _ACT_NAMES.get(fn.act)
        epilogue = " + ".join((["bias"] if fn.has_bias else []) + ([act] if act else []))
        if fn.kind == "Conv2D":
            if fn.pool is not None and _direct_small_conv(fn):
                return f"direct Numba convolution of a few-channel input, {epilogue or 'no epilogue'} and the 2x2 max pool " \
                    "in the same pass (the full-size output is never stored)"
            note = "convolution in cache-sized blocks"
            if epilogue:
                note += f", {epilogue} on each block in place right after its GEMM"
            if fn.pool is not None:
                note += (", then max-pooled: for a 2x2 pool after a Winograd F(4x4, 3x3) convolution inside its output "
                         "transform, else block by block (the full-size output is never stored)")
            return note
        return f"GEMM into a fresh array, then {epilogue} on it in place (one pass)" if epilogue else None
    inner = getattr(fn, "steps", None)
    if inner is not None:  # an elementwise chain (runtime/fusion.py)
        return f"{len(inner)} elementwise ops in one compiled pass, one output array"
    return None


def _direct_small_conv(fn: Any) -> bool:
    """Whether a fused, pooled Conv2D step runs :mod:`hubkit.ops._conv_small` (as far as static shapes tell)."""
    from hubkit.ops import _conv_small, conv_fused

    try:
        x_shape, w_shape = fn.nodes[0].inputs[0].shape, fn.nodes[0].inputs[1].shape
        c, taps = int(x_shape[-1]), int(w_shape[0]) * int(w_shape[1])
    except (AttributeError, IndexError, TypeError):
        return False
    return (
        tuple(fn.pool.get("ksize", ())) == (2, 2) and tuple(fn.pool.get("strides", ())) == (2, 2)
        and c <= conv_fused.SMALL_MAX_CHANNELS and taps > 1 and taps * c <= _conv_small.MAX_TERMS
    )


def _zeros(info: Any, batch: int, key: str, sig_name: str) -> np.ndarray:
    shape = info.shape
    if shape is None or any(d is None for d in shape[1:]):
        raise SignatureError(
            f"Signature {sig_name!r} input {key!r} has shape {shape}: only its first (batch) dimension may be "
            "unknown to run the plan on zeros; describe it without a batch size."
        )
    dims = tuple(batch if (i == 0 and d is None) else d for i, d in enumerate(shape))
    if info.dtype.name == "string":
        return np.full(dims, "", dtype=object)
    return np.zeros(dims, info.dtype.np_dtype)


def describe_module_plan(module: Any, signature: str | None = None, batch: int | None = None) -> str:
    """The optimised plan of ``module``'s ``signature``, each fused step's in-place work, and sizes at ``batch``.

    Args:
        module: a ``hubkit.Module``.
        signature: the signature name (default ``"default"``).
        batch: when given, the plan runs once on zeros with this batch size (the first dimension of
            inputs declared ``[None, ...]``) and each step's output shape and bytes are shown.

    Raises:
        SignatureError: no such signature, or an input whose shape is unknown beyond the batch.
    """
    text = describe_signature_plan(module, signature)
    sig = module._variant.signature(signature)
    plan, in_keys, _ = module._plans.get((sig.name, True)) or module._compile(sig, True)
    sizes: dict[int, tuple[str, tuple, int]] = {}
    peak = out_bytes = 0
    if batch is not None:
        feeds = [_zeros(sig.inputs[k], batch, k, sig.name) for k in in_keys]
        inter: dict[str, Any] = {}
        outs = plan.run(feeds, inter)
        out_bytes = sum(v.nbytes for v in outs if isinstance(v, np.ndarray))
        leaves = set(plan.feed_slots) | {s for _, s in plan.leaf_names}
        live: dict[int, int] = {}
        for step in plan.steps:
            for slot, t in zip(step.out_slots, step.node.outputs):
                v = inter.get(t.name)
                if isinstance(v, np.ndarray):
                    sizes[slot] = (v.dtype.name, v.shape, v.nbytes)
                    if slot not in plan.fetch_slots:
                        live[slot] = v.nbytes
            peak = max(peak, sum(live.values()))
            for slot in step.frees:
                if slot not in leaves:
                    live.pop(slot, None)
    lines = text.split("\n")
    first_step = len(lines) - len(plan.steps)  # one line per step, after the heading lines
    head, body = lines[:first_step], lines[first_step:]
    out = list(head)
    for step, line in zip(plan.steps, body):
        out.append(line)
        note = _in_place_note(step.fn)
        if note:
            out.append(f"        {note}")
        if batch is not None:
            written = [sizes[s] for s in step.out_slots if s in sizes]
            if written:
                desc = "; ".join(f"{d} {shape}, {_format_bytes(n)}" for d, shape, n in written)
                out.append(f"        batch {batch}: writes {desc}")
    if batch is not None:
        out.append(f"batch {batch}: intermediates peak at {_format_bytes(peak)} (outputs {_format_bytes(out_bytes)})")
    return "\n".join(out)
