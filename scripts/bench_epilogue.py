"""The fused epilogue kernels of this checkout against those of a git revision, in one process.

Usage: ``python scripts/bench_epilogue.py [--base main] [--rounds 15] [--clock cpu]``

Loads ``_epilogue.py``, ``_small_linear.py`` and ``conv_nchw.py`` as they are at ``--base`` (from
``git show``) beside this checkout's, compiles both sets of Numba kernels afresh (in a temporary
cache), checks that they give the same bits (NaN, infinities and signed zeros included) and
compares their machine code (names masked), then times each pair in interleaved rounds on float32
arrays of the MLP 784-512-512-10 and of a 56x56x64 convolution layer. Prints min
(median) per call and the ratio current / base (below 1: the current kernel is faster). Run it
with one thread (``NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``) and ``--clock cpu`` on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from _timing import interleaved, load_header  # noqa: E402

from hubkit.ops import _epilogue, _numba, _small_linear, conv_nchw  # noqa: E402

FILES = {"_epilogue": _epilogue, "_small_linear": _small_linear, "conv_nchw": conv_nchw}


def load_base(rev: str, where: Path) -> dict:
    """The three modules as they are at ``rev``, imported under the names ``base_<module>``."""
    mods = {}
    for name in FILES:
        path = where / f"base_{name}.py"
        path.write_bytes(subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:hubkit/ops/{name}.py"],
                                        check=True, capture_output=True).stdout)
        spec = importlib.util.spec_from_file_location(f"base_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods


def aligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` at a 64-byte boundary: both contenders' buffers line up alike."""
    buf = np.empty(a.nbytes + 64, np.uint8)
    start = -buf.ctypes.data % 64
    out = buf[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def cases(rng: np.random.Generator):
    """(label, module, kernel name, njit options, argument maker) per kernel; makers copy what is written."""
    f32 = np.float32

    def arr(*shape):
        a = rng.standard_normal(shape).astype(f32)
        flat = a.reshape(-1)
        flat[::97] = np.nan
        flat[1::89] = -0.0
        flat[2::83] = np.inf
        flat[3::79] = 7.5
        return a

    m64, m4096, bias512, x4 = arr(64, 512), arr(4096, 512), arr(512), arr(4, 784)
    wt512 = rng.standard_normal((512, 784)).astype(f32) * f32(0.05)
    conv, src, res, b64, shift = arr(8, 64, 3136), arr(8, 3136, 64), arr(8, 64, 3136), arr(64), arr(64)
    scale = rng.standard_normal(64).astype(f32)
    no_res = np.empty((0, 0, 0), f32)
    small = {"fastmath": _small_linear._FASTMATH}
    out512, out_conv = np.empty((4, 512), f32), np.empty((8, 64, 3136), f32)
    return [
        ("MLP bias+ReLU, 64x512", "_epilogue", "bias_act_kernel", {}, lambda: (aligned(m64), bias512, 1)),
        ("MLP bias+ReLU, 4096x512", "_epilogue", "bias_act_kernel", {}, lambda: (aligned(m4096), bias512, 1)),
        ("MLP small linear 4x784 @ 784x512", "_small_linear", "linear_block_kernel", small,
         lambda: (x4, wt512, bias512, 1, aligned(out512), 0, 512)),
        ("conv bias+res+ReLU, 8x64x56x56", "conv_nchw", "epilogue_kernel", {}, lambda: (aligned(conv), b64, res, 1)),
        ("conv bias+ReLU6, 8x64x56x56", "conv_nchw", "epilogue_kernel", {}, lambda: (aligned(conv), b64, no_res, 2)),
        ("conv NHWC->NCHW bias+res+ReLU6", "conv_nchw", "transpose_epilogue_kernel", {},
         lambda: (src, b64, res, 2, aligned(out_conv))),
        ("conv scale+shift+ReLU, 8x64x56x56", "conv_nchw", "channel_affine_kernel", {},
         lambda: (conv, scale, shift, 1, aligned(out_conv))),
    ]


def machine_code(fn) -> list[str]:
    """The instructions of ``fn``'s only compiled signature, with symbol and label names masked."""
    asm = fn.inspect_asm(fn.signatures[0])
    lines = (line.split("#")[0].strip() for line in asm.splitlines())
    return [re.sub(r"\.const\.\S+|_ZN\S+|\.L\w+", "NAME", x) for x in lines if x and not x.startswith(".") and not x.endswith(":")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="git revision to compare with (default main)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved samples per kernel (default 15)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="cpu", help="what a sample measures (default cpu)")
    args = parser.parse_args()
    if not _numba.numba_enabled():
        sys.exit("Numba is off or not installed: there are no kernels to compare.")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(load_header())
    print(f"current: {ROOT}; base: {args.base}; clock: {args.clock}; min (median) per call")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["NUMBA_CACHE_DIR"] = tmp  # compiled afresh: numba shows the machine code of no cached kernel
        base = load_base(args.base, Path(tmp))
        ratios = []
        for label, name, fn_name, options, make in cases(np.random.default_rng(0)):
            fast = {who: _numba.kernel(getattr(mods[name], fn_name), **options)
                    for who, mods in (("base", base), ("current", FILES))}
            got = {}
            for who, fn in fast.items():  # same inputs, every array the kernel writes returned
                a = make()
                fn(*a)
                got[who] = [x for x in a if isinstance(x, np.ndarray) and x.size]
            for x, y in zip(got["base"], got["current"]):
                if x.tobytes() != y.tobytes():
                    sys.exit(f"{label}: the current kernel's bits differ from the base's")
            same_code = machine_code(fast["base"]) == machine_code(fast["current"])
            argsets = {who: make() for who in fast}  # each contender its own buffers, evolving alike
            calls = {who: (lambda f=fn, a=argsets[who]: f(*a)) for who, fn in fast.items()}
            inner = 200 if "4x784" in label or "64x512" in label else 5
            t = interleaved(calls, repeats=args.rounds, inner=inner, warmup=2, clock=clock)
            ratio = t["current"].best / t["base"].best
            ratios.append(ratio)
            print(f"{label:36s} base {t['base'].best * 1e6:9.1f} ({t['base'].median * 1e6:9.1f}) us"
                  f"  current {t['current'].best * 1e6:9.1f} ({t['current'].median * 1e6:9.1f}) us"
                  f"  ratio {ratio:.3f} ({t['current'].median / t['base'].median:.3f})"
                  f"  machine code {'identical' if same_code else 'DIFFERENT'}")
        print(f"geometric mean ratio (min): {float(np.exp(np.mean(np.log(ratios)))):.3f}; bits identical in every case")
    print(load_header())


if __name__ == "__main__":
    main()
