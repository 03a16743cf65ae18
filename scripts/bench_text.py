"""Text-embedding throughput: hubkit's module vs a hand-written NumPy baseline, in one process.

Usage: ``python scripts/bench_text.py [--vocab 100000] [--dim 300] [--seconds 2] [--stages]``

Builds a 100,000-word vocabulary (+10 OOV buckets) with random 300-dim vectors, exports it with
scripts/export_text_embedding.py, loads the module and embeds random sentences of 5-40 words
(about 3% unknown words). Reports sentences/second at batch 1 and batch 1024 for the NumPy and
the Numba kernels against the baseline (a per-sentence Python loop: ``str.split``, dict lookup,
NumPy gather, sum, divide by sqrt(n)), plus ``import hubkit`` time and the module's load time,
each in a fresh subprocess.

``--stages`` instead times each stage of the module's work at batch 1024 (the same vocabulary and
sentences), contenders interleaved in this process, best of ``--rounds``: the string input check
(vs ``np.asarray(..., dtype=object)``), tokenize + lookup (vectorised NumPy vs the dict path vs
Numba, and the baseline's ``str.split`` + dict loop), the combiner (NumPy vs Numba vs the
baseline's per-sentence gather and sum), the bare gather of all rows, and the key-table build
(vs building the vocabulary's dict).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _text_data import NUM_OOV_BUCKETS, text_data
from _timing import interleaved, load_header
from export_text_embedding import export_words

import hubkit as hk
from hubkit.errors import FeedError
from hubkit.graph.values import convert_value
from hubkit.ops import _numba, _numba_kernels, _vocab, _vocab_numpy, sparse


class Baseline:
    """The straightforward per-sentence loop a user would write without hubkit."""

    def __init__(self, words: list[str], embeddings: np.ndarray) -> None:
        self.ids = {w: i for i, w in enumerate(words)}
        self.table = np.concatenate([embeddings, np.zeros((NUM_OOV_BUCKETS, embeddings.shape[1]), np.float32)])
        self.oov = len(words)  # unknown words share one zero row (cheaper than hashing: favours the baseline)

    def __call__(self, sentences: list[str]) -> np.ndarray:
        out = np.zeros((len(sentences), self.table.shape[1]), np.float32)
        get, oov = self.ids.get, self.oov
        for i, sentence in enumerate(sentences):
            ids = [get(w, oov) for w in sentence.split()]
            if ids:
                out[i] = self.table[ids].sum(axis=0) / np.sqrt(len(ids))
        return out


def throughputs(fns: dict[str, object], sentences: list[str], batch: int, seconds: float) -> dict[str, float]:
    """Sentences per second of each ``fn`` over consecutive batches: best of 3 rounds, interleaved.

    Interleaving the contenders round by round keeps load from other processes on a shared
    machine from favouring whichever ran in a quiet moment.
    """
    batches = [sentences[i : i + batch] for i in range(0, len(sentences) - batch + 1, batch)]
    best = dict.fromkeys(fns, 0.0)
    for _ in range(3):
        for name, fn in fns.items():
            select_kernels(name)
            fn(batches[0])  # warm-up: plans, kernels, page cache
            done, start, k = 0, time.perf_counter(), 0
            while time.perf_counter() - start < seconds / 3 / len(fns):
                fn(batches[k % len(batches)])
                done += batch
                k += 1
            best[name] = max(best[name], done / (time.perf_counter() - start))
    _numba.set_numba_enabled(None)
    return best


def select_kernels(name: str) -> None:
    if name in ("numpy", "numba"):
        _numba.set_numba_enabled(name == "numba")


def subprocess_seconds(code: str, repeat: int = 5, env: dict[str, str] | None = None) -> float:
    """The best wall time printed by ``code`` run in ``repeat`` fresh interpreters (with ``env``, if given)."""
    times = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
        times.append(float(out.strip().splitlines()[-1]))
    return min(times)


def import_seconds(pycache: str) -> float:
    """``import hubkit`` in fresh interpreters with bytecode cached, as an installed package has it: caching on
    (``PYTHONDONTWRITEBYTECODE`` unset) into ``pycache`` (``PYTHONPYCACHEPREFIX``, so the source tree stays as it
    is), after one untimed run that writes it. With bytecode off, every import compiles each module's source
    first (0.3 s more on the AVX2 host)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache
    code = "import time; t = time.perf_counter(); import hubkit; print(time.perf_counter() - t)"
    subprocess_seconds(code, 1, env)
    return subprocess_seconds(code, 5, env)


def _with_kernels(numba: bool, fn):
    """``fn`` run with the Numba kernels switched on or off (the switch is read on every op call)."""

    def run():
        _numba.set_numba_enabled(numba)
        return fn()

    return run


def bench_stages(words: list[str], baseline: Baseline, sentences: list[str], batch: int, rounds: int) -> None:
    """Each stage of the module's work on one batch, against what the baseline does for it."""
    texts = sentences[:batch]
    arr = np.asarray(texts, dtype=object)
    data = "\n".join(words).encode()
    vocab = _vocab.Vocabulary("<bench>", data)
    oov = NUM_OOV_BUCKETS

    def tokenize(numba: bool, vectorised: bool = True):
        def run():
            _vocab.VECTORIZED_MIN_BYTES = 2048 if vectorised else 1 << 62
            try:
                return _vocab.tokenize_and_lookup(
                    arr, vocab, lower=False, strip_punctuation=False, num_oov_buckets=oov, default_value=-1
                )
            finally:
                _vocab.VECTORIZED_MIN_BYTES = 2048

        return _with_kernels(numba, run)

    def baseline_tokenize():
        get, unknown = baseline.ids.get, baseline.oov
        return [[get(w, unknown) for w in s.split()] for s in texts]

    runs = {"numpy (vectorised)": tokenize(False), "numpy (dict path)": tokenize(False, vectorised=False),
            "baseline split + dict": baseline_tokenize}
    if _numba.set_numba_enabled(True):
        runs["numba"] = tokenize(True)
    ids, row_ids, _ = runs["numpy (dict path)"]()
    for name in ("numpy (vectorised)", "numba"):
        if name in runs:
            got = runs[name]()
            np.testing.assert_array_equal(got[0], ids)
            np.testing.assert_array_equal(got[1], row_ids)
    table = baseline.table
    per_sentence = [ids[row_ids == i] for i in range(batch)]

    def baseline_combine():
        out = np.zeros((batch, table.shape[1]), np.float32)
        for i, sid in enumerate(per_sentence):
            out[i] = table[sid].sum(axis=0) / np.sqrt(len(sid))
        return out

    combiners = {
        "numpy": _with_kernels(False, lambda: sparse.combine(table, ids, row_ids, batch, None, _numba_kernels.SQRTN)),
        "baseline per-sentence": baseline_combine,
    }
    if "numba" in runs:
        combiners["numba"] = _with_kernels(True, lambda: sparse.combine(table, ids, row_ids, batch, None,
                                                                        _numba_kernels.SQRTN))
    want = baseline_combine()
    for fn in combiners.values():
        np.testing.assert_allclose(fn(), want, rtol=1e-5, atol=1e-6)
    stages = {
        "string input check": {
            "convert_value": lambda: convert_value(texts, hk.string, (None,), "Placeholder 'sentences'", FeedError),
            "np.asarray(object)": lambda: np.asarray(texts, dtype=object),
        },
        "tokenize + lookup": runs,
        "combiner (sqrtn)": combiners,
        "bare gather": {"table.take(ids)": lambda: table.take(ids, axis=0)},
        "key table build": {"KeyTable": lambda: _vocab_numpy.KeyTable(data),
                            "dict of the words": lambda: dict(zip(words, range(len(words))))},
    }
    _numba.set_numba_enabled(None)
    gathered = ids.size * table.shape[1] * table.itemsize
    print(f"stages at batch {batch} ({ids.size} tokens, {gathered / 1e6:.1f} MB of gathered rows from a "
          f"{table.nbytes / 1e6:.0f} MB table), best (median) of {rounds} interleaved calls:")
    for stage, fns in stages.items():
        res = interleaved(fns, rounds, 1, warmup=1)
        _numba.set_numba_enabled(None)
        first = next(iter(res.values())).best
        print(f"  {stage}:")
        for name, t in res.items():
            unit, scale = ("us", 1e6) if t.best < 1e-3 else ("ms", 1e3)
            print(f"    {name:>24}: {t.best * scale:8.2f} {unit} ({t.median * scale:.2f} {unit})  "
                  f"{t.best / first:5.2f}x the first")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--stages", action="store_true", help="time each stage at batch 1024 instead")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds of --stages (default 15)")
    args = parser.parse_args(argv)
    print(load_header())
    rng = np.random.default_rng(0)
    words, embeddings, sentences = text_data(rng, args.vocab, args.dim, 8192)
    baseline = Baseline(words, embeddings)
    if args.stages:
        bench_stages(words, baseline, sentences, 1024, args.rounds)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "text_module")
        export_words(words, embeddings, path, num_oov_buckets=NUM_OOV_BUCKETS)
        size_mb = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 1e6
        module = hk.Module(path)
        # Same numbers for in-vocabulary sentences (unknown words differ by design: hashed vs one row),
        # with each kernel set, one sentence at a time and in a batch (the paths differ by batch size).
        known = [" ".join(words[j] for j in rng.integers(0, len(words), size=n)) for n in rng.integers(5, 41, 1024)]
        want = baseline(known)
        for kernels in ("numpy", "numba"):
            select_kernels(kernels)
            np.testing.assert_allclose(module(known), want, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(module(known[:1]), want[:1], rtol=1e-4, atol=1e-5)
        _numba.set_numba_enabled(None)

        print(f"vocabulary {args.vocab} words + {NUM_OOV_BUCKETS} OOV buckets, dim {args.dim}, module {size_mb:.0f} MB")
        print(f"{'batch':>6} {'kernels':>8} {'hubkit sent/s':>14} {'baseline sent/s':>16} {'ratio':>6}")
        contenders = {"baseline": baseline, "numpy": module}
        if _numba.set_numba_enabled(True):
            contenders["numba"] = module
        else:
            print("numba is not available: only the NumPy kernels are measured")
        for batch in (1, 1024):
            rates = throughputs(contenders, sentences, batch, args.seconds * len(contenders))
            for kernels in ("numpy", "numba"):
                if kernels in rates:
                    ours, base = rates[kernels], rates["baseline"]
                    print(f"{batch:>6} {kernels:>8} {ours:>14,.0f} {base:>16,.0f} {ours / base:>5.2f}x")
        _numba.set_numba_enabled(None)

        t_import = import_seconds(os.path.join(tmp, "pycache"))
        t_load = subprocess_seconds(
            "import time, hubkit; t = time.perf_counter(); "
            f"hubkit.Module({path!r}); print(time.perf_counter() - t)"
        )
        t_first = subprocess_seconds(
            "import time, hubkit; t = time.perf_counter(); "
            f"hubkit.Module({path!r})(['hello world']); print(time.perf_counter() - t)"
        )
        print(f"import hubkit: {t_import:.3f} s, bytecode cached as installed (target < 0.3 s)")
        print(f"Module(path) of the {size_mb:.0f} MB text module: {t_load:.3f} s (target < 0.2 s)")
        print(f"Module(path) and a first call (reads the vocabulary, imports numba): {t_first:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
