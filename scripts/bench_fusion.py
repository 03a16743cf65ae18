"""Fusion benchmark: elementwise chains run as one Numba kernel vs the same plan's NumPy steps.

For each chain and size (1e3 .. 1e7 elements) the fused plan and its unfused twin (``plan.unfused``)
run interleaved in this process; the minimum time per call is reported with the ratio
NumPy / fused (above 1: fusion wins). Below ``MIN_ELEMENTS`` the fused plan runs the NumPy steps
itself, so its ratio is ~1 there by design; ``--force`` lowers that threshold to time the kernel.

``--ops`` instead measures the per-element cost of each opcode inside the kernel and of the
matching NumPy step (1e6 elements): the costs the op classes declare (``fused = FusedForm(...)``).

Usage: ``.venv/bin/python scripts/bench_fusion.py [--quick] [--force] [--ops]``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import interleaved, load_header

import hubkit as hk
from hubkit.ops import _numba
from hubkit.ops.registry import get_op, registered_ops
from hubkit.runtime import fusion
from hubkit.runtime.executor import compile_plan

WIDTH = 1000  # the last axis (a bias of this length broadcasts along it)


def chains(x: hk.Tensor, b: hk.Tensor) -> dict[str, hk.Tensor]:
    return {
        "relu(x + b)": hk.nn.relu(hk.nn.bias_add(x, b)),
        "x * sigmoid(x)": x * hk.sigmoid(x),
        "gelu (tanh)": hk.nn.gelu(x, approximate=True),
        "gelu (erf)": hk.nn.gelu(x),
        "(2x + 1) * x - 3": (x * 2.0 + 1.0) * x - 3.0,
        "clip(x * b, -1, 1)": hk.clip_by_value(x * b, -1.0, 1.0),
    }


def best_interleaved(fns: list[Callable[[], object]], rounds: int, repeats: int) -> list[float]:
    """Fastest seconds per call of each function, over ``rounds`` interleaved samples (no warm-up)."""
    return [t.best for t in interleaved(dict(enumerate(fns)), rounds, repeats, warmup=0).values()]


def bench_chains(quick: bool, dtypes: list[str]) -> None:
    sizes = [10**3, 10**4, 10**5, 10**6] + ([] if quick else [10**7])
    print(f"{'chain':20s} {'dtype':8s} {'elements':>9s} {'NumPy':>10s} {'fused':>10s} {'NumPy/fused':>11s}")
    for dtype_name in dtypes:
        dtype = hk.as_dtype(dtype_name)
        g = hk.Graph()
        with g.as_default():
            x = hk.placeholder(dtype, [None, WIDTH], name="x")
            b = hk.placeholder(dtype, [WIDTH], name="b")
            built = chains(x, b)
        rng = np.random.default_rng(0)
        bv = rng.standard_normal(WIDTH).astype(dtype.np_dtype)
        for name, y in built.items():
            plan = compile_plan(g, [y], [x, b])
            unfused = plan.unfused or plan
            for n in sizes:
                xv = rng.standard_normal((n // WIDTH or 1, min(n, WIDTH))).astype(dtype.np_dtype)
                feeds = [xv, bv[: xv.shape[1]]] if xv.shape[1] == WIDTH else None
                if feeds is None:  # below one row: a narrower graph is not worth it, skip
                    continue
                ref, got = unfused.run(feeds)[0], plan.run(feeds)[0]
                np.testing.assert_allclose(got, ref, rtol=2e-5 if dtype_name == "float32" else 1e-12, atol=1e-6)
                repeats = max(1, int(3e6 // n))
                rounds = 3 if quick else 7
                t_np, t_fused = best_interleaved(
                    [lambda f=feeds, p=unfused: p.run(f), lambda f=feeds, p=plan: p.run(f)], rounds, repeats
                )
                print(f"{name:20s} {dtype_name:8s} {n:9.0e} {t_np * 1e6:8.1f}us {t_fused * 1e6:8.1f}us "
                      f"{t_np / t_fused:10.2f}x")


# -- per-opcode costs -------------------------------------------------------------------------------------
_OP_OF = {  # opcode -> (op type whose NumPy kernel it replaces, extra NumPy arguments)
    fusion.NEG: ("Neg", ()), fusion.ABS: ("Abs", ()), fusion.EXP: ("Exp", ()), fusion.LOG: ("Log", ()),
    fusion.LOG1P: ("Log1p", ()), fusion.SQRT: ("Sqrt", ()), fusion.RSQRT: ("Rsqrt", ()),
    fusion.SQUARE: ("Square", ()), fusion.CUBE: ("Pow", (3.0,)), fusion.TANH: ("Tanh", ()),
    fusion.SIGMOID: ("Sigmoid", ()), fusion.RELU: ("Relu", ()), fusion.RELU6: ("Relu6", ()),
    fusion.SOFTPLUS: ("Softplus", ()), fusion.ERF: ("Erf", ()), fusion.ADD: ("Add", None),
    fusion.SUB: ("Sub", None), fusion.MUL: ("Mul", None), fusion.DIV: ("RealDiv", None),
    fusion.MAX: ("Maximum", None), fusion.MIN: ("Minimum", None), fusion.POW: ("Pow", (1.7,)),
}


def bench_ops(n: int = 10**6) -> None:
    kernel = fusion.compiled_kernel()
    if kernel is None:
        raise SystemExit("Numba is off (HUBKIT_NUMBA=0 or numba missing): nothing to measure.")
    reps = 8  # instructions per program, so the load and store passes are a small part
    print("opcode     fused32 numpy32 fused64 numpy64  (ns per element)")
    rows = {}
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        x = (np.abs(rng.standard_normal(n)) + 0.1).astype(dtype)  # in every op's domain
        y = (np.abs(rng.standard_normal(n)) + 0.5).astype(dtype)
        out = np.empty_like(x)
        consts = np.array([*fusion._BASE_CONSTANTS, 1.7], dtype)
        dummy = np.zeros(1, dtype)
        ops = (x, y, dummy, dummy)
        kinds = np.array([fusion.FULL, fusion.FULL, fusion.SCALAR, fusion.SCALAR], np.int32)
        base = np.array([(fusion.LOAD, 0, 0, 0), (fusion.LOAD, 1, 1, 0), (fusion.ADD, 2, 0, 1)], np.int32)

        def timed(program: np.ndarray, args: tuple = (consts, ops, kinds, out, n)) -> float:
            kernel(program, *args)
            return best_interleaved([lambda: kernel(program, *args)], 5, 3)[0]

        t_base = timed(base)
        rows.setdefault("pass", []).extend([t_base / 4 / n * 1e9] * 2)  # two loads, one store, one add
        for code, (op, extra) in _OP_OF.items():
            body = [(code, 2, 0, 1 if code >= fusion.ADD else 0) for _ in range(reps)]
            if code == fusion.POW:
                body = [(fusion.CONST, 3, 4, 0)] + [(code, 2, 0, 3) for _ in range(reps)]
            program = np.array([*base[:2], *body, (fusion.ADD, 2, 2, 1)], np.int32)
            fused = max(timed(program) - t_base, 0.0) / reps / n * 1e9
            forward = get_op(op).forward
            args = (x, y) if extra is None else (x, *[np.asarray(e, dtype) for e in extra])
            t_np = best_interleaved([lambda f=forward, a=args: f(*a)], 5, 3)[0]
            rows.setdefault(code, []).extend([fused, t_np / n * 1e9])
    names = {form.code: name for name in registered_ops() if (form := get_op(name).fused) is not None}
    names[fusion.CUBE] = "Pow(x, 3)"
    for code, r in rows.items():
        label = code if isinstance(code, str) else names.get(code, str(code))
        print(f"{label:9s} " + " ".join(f"{v:7.2f}" for v in r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sizes up to 1e6 and fewer rounds")
    parser.add_argument("--force", action="store_true", help="run the kernel at every size (no threshold)")
    parser.add_argument("--ops", action="store_true", help="measure per-opcode costs instead")
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    args = parser.parse_args()
    print(load_header())
    if not _numba.numba_enabled():
        raise SystemExit("Numba is off (HUBKIT_NUMBA=0 or numba missing): there is no fused path to time.")
    if args.ops:
        bench_ops()
        return
    if args.force:
        fusion.MIN_ELEMENTS = 0
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    bench_chains(args.quick, dtypes)


if __name__ == "__main__":
    main()
