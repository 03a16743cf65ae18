"""Text embeddings on Dask: sentences per second with 1 and 2 worker processes vs one process.

Usage: ``python scripts/bench_dask.py [--vocab 100000] [--dim 300] [--sentences 131072]
[--partition-rows 8192] [--batch-size 1024] [--rounds 3] [--small 16,128]``

Every BLAS/OpenMP/Numba thread pool is limited to one thread (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS,
MKL_NUM_THREADS, NUMBA_NUM_THREADS = 1, set here before NumPy loads, so the baseline in this process
and the workers the clusters spawn run alike). The text-embedding module (the vocabulary and
sentences of scripts/bench_text.py: random words, 5-40 words per sentence, ~3% unknown) is exported
to a temporary directory and used by its path.

Contenders, run in turn round by round (so load from other work falls on all of them alike):

- ``single``: this process calls the ``Module`` over the sentences in batches of ``--batch-size``;
- ``dask-1`` / ``dask-2``: ``hubkit.dask.map_partitions`` over a dask array of the same sentences
  (already persisted on the workers, ``--partition-rows`` per partition) on a ``LocalCluster`` of 1
  or 2 worker processes with one thread each, the module loaded on every worker beforehand.

CPU seconds (this process, which also hosts the schedulers, plus every worker) are reported beside
the wall times: on a machine shared with other work they show the parallel efficiency even when the
wall-clock speed-up cannot. All three reduce the embeddings to their column sums (on the workers for Dask), so the figures
measure the embedding work and not the transfer of the vectors to the client; the sums are checked
against each other. Then the per-partition overhead at small partitions: the same 8,192 sentences in
partitions of each ``--small`` size on 2 workers, against this process calling the module at that
batch size; overhead = (CPU seconds of the Dask job - CPU seconds of the same module calls in one
process) / partitions.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import load_header  # noqa: E402
from export_text_embedding import export_words  # noqa: E402

import hubkit as hk  # noqa: E402

NUM_OOV_BUCKETS = 10


def random_words(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words: set[str] = set()
    while len(words) < n:
        for length in rng.integers(2, 11, size=n - len(words) + 100):
            words.add("".join(rng.choice(letters, size=length)))
    return sorted(words)[:n]


def random_sentences(rng: np.random.Generator, words: list[str], n: int) -> list[str]:
    vocab = np.array(words, dtype=object)
    out = []
    for length in rng.integers(5, 41, size=n):
        tokens = list(vocab[rng.integers(0, len(vocab), size=length)])
        for i in np.flatnonzero(rng.random(length) < 0.03):
            tokens[i] = tokens[i] + "xq"  # an unknown word
        out.append(" ".join(tokens))
    return out


def single_process(module: hk.Module, sentences: np.ndarray, batch: int) -> np.ndarray:
    total = np.zeros(module.get_output_info_dict()["default"].get_shape()[1], np.float64)
    for start in range(0, len(sentences), batch):
        total += module(sentences[start : start + batch]).sum(axis=0, dtype=np.float64)
    return total


def start_cluster(workers: int):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None,
                           silence_logs=logging.CRITICAL, memory_limit=0)
    return cluster, Client(cluster, set_as_default=False)


def dask_job(client, path: str, sentences: np.ndarray, rows: int, batch: int):
    """A function running the embedding job on ``client``'s cluster (the input already persisted there)."""
    import dask.array as da

    import hubkit.dask as hd

    data = client.persist(da.from_array(sentences, chunks=rows))
    total = hd.map_partitions(path, data, batch_size=batch).astype(np.float64).sum(axis=0)
    return lambda: client.compute(total).result()


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def worker_cpu(client) -> dict[str, float]:
    """CPU seconds used so far by each worker process of ``client``'s cluster."""
    return client.run(time.process_time)


class Cost:
    """Wall and CPU seconds of one call: this process (with the schedulers and clients) and each worker."""

    def __init__(self, wall: float, main: float, workers: dict[str, float]) -> None:
        self.wall, self.main, self.workers = wall, main, workers

    @property
    def cpu(self) -> float:
        return self.main + sum(self.workers.values())

    def bound(self, cores: int) -> float:
        """Least wall time this CPU work needs on ``cores`` idle cores: the busiest worker, or all of it shared."""
        return max([self.main, *self.workers.values(), self.cpu / cores])


def cost_of(fn, client=None) -> tuple[Cost, object]:
    """The :class:`Cost` and result of one call.

    CPU time is much less sensitive than wall time to other work on a shared machine: the ratio of the
    single process's CPU to a cluster's total CPU for the same sentences is the parallel efficiency.
    """
    before = worker_cpu(client) if client else {}
    main0 = time.process_time()
    wall, result = timed(fn)
    main1 = time.process_time()
    after = worker_cpu(client) if client else {}
    return Cost(wall, main1 - main0, {k: after[k] - before.get(k, 0.0) for k in after}), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--sentences", type=int, default=131_072)
    parser.add_argument("--partition-rows", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", default="16,128", help="partition sizes of the overhead measurement")
    args = parser.parse_args(argv)
    print(load_header(), "(start)")
    print("threads: OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS=1 here and in every worker; 1 thread per worker")
    rng = np.random.default_rng(0)
    words = random_words(rng, args.vocab)
    embeddings = rng.normal(size=(args.vocab, args.dim)).astype(np.float32)
    sentences = np.array(random_sentences(rng, words, args.sentences), dtype=object)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "text_module")
        export_words(words, embeddings, path, num_oov_buckets=NUM_OOV_BUCKETS)
        module = hk.Module(path)
        clusters = {n: start_cluster(n) for n in (1, 2)}
        try:
            jobs = {
                "single": lambda: single_process(module, sentences, args.batch_size),
                **{f"dask-{n}": dask_job(c[1], path, sentences, args.partition_rows, args.batch_size)
                   for n, c in clusters.items()},
            }
            for name, fn in jobs.items():  # warm-up: the module loads on every worker, kernels compile
                seconds = timed(fn)[0]
                print(f"warm-up {name}: {seconds:.2f} s")
            clients = {"single": None, **{f"dask-{n}": c[1] for n, c in clusters.items()}}
            costs: dict[str, list[Cost]] = {k: [] for k in jobs}
            results = {}
            for _ in range(args.rounds):
                for name, fn in jobs.items():
                    cost, results[name] = cost_of(fn, clients[name])
                    costs[name].append(cost)
            for name in ("dask-1", "dask-2"):
                np.testing.assert_allclose(results[name], results["single"], rtol=1e-5)
            print(f"\n{args.sentences:,} sentences, vocabulary {args.vocab:,} + {NUM_OOV_BUCKETS} OOV buckets, dim "
                  f"{args.dim}, batch {args.batch_size}, {args.partition_rows} rows per partition, "
                  f"median of {args.rounds} interleaved rounds")
            print(f"{'contender':>10} {'sentences/s':>12} {'vs single':>10} {'CPU s':>7} {'CPU efficiency':>15} "
                  f"{'idle-core bound':>16}")

            def median(name: str, what) -> float:
                return statistics.median(what(c) for c in costs[name])

            base, base_cpu = median("single", lambda c: c.wall), median("single", lambda c: c.cpu)
            for name, cores in (("single", 1), ("dask-1", 1), ("dask-2", 2)):
                wall, cpu = median(name, lambda c: c.wall), median(name, lambda c: c.cpu)
                bound = median(name, lambda c, cores=cores: c.bound(cores))
                print(f"{name:>10} {args.sentences / wall:>12,.0f} {base / wall:>9.2f}x {cpu:>7.2f} "
                      f"{base_cpu / cpu:>14.2f} {base_cpu / bound:>15.2f}x")
            print("CPU s: this process (schedulers and clients included) plus the workers; CPU efficiency: the single "
                  "process's CPU seconds over the contender's; idle-core bound: the single process's CPU seconds over "
                  "the least wall time the contender's CPU work needs on 1 or 2 idle cores (its busiest process, or "
                  "its total CPU shared over the cores): the speed-up the same work allows on an idle machine, "
                  "an estimate where wall times are stretched by other work")

            subset = sentences[:8192]
            client = clusters[2][1]
            print(f"\nper-partition overhead, {len(subset):,} sentences on 2 workers (median of {args.rounds}):")
            print(f"{'rows/part':>10} {'parts':>6} {'wall s':>7} {'CPU s':>7} {'single CPU s':>13} {'overhead/part':>14}")
            for rows in (int(r) for r in args.small.split(",")):
                fns = {"dask": dask_job(client, path, subset, rows, min(rows, args.batch_size)),
                       "single": lambda rows=rows: single_process(module, subset, rows)}
                for fn in fns.values():
                    fn()
                wall: list[float] = []
                used: dict[str, list[float]] = {k: [] for k in fns}
                for _ in range(args.rounds):
                    for name, fn in fns.items():
                        cost = cost_of(fn, client if name == "dask" else None)[0]
                        used[name].append(cost.cpu)
                        if name == "dask":
                            wall.append(cost.wall)
                parts = -(-len(subset) // rows)
                dask_cpu, alone = statistics.median(used["dask"]), statistics.median(used["single"])
                print(f"{rows:>10} {parts:>6} {statistics.median(wall):>7.3f} {dask_cpu:>7.3f} {alone:>13.3f} "
                      f"{(dask_cpu - alone) / parts * 1e3:>11.2f} ms")
            print("overhead/part: CPU seconds of the Dask job (workers, scheduler, client) minus this process's for "
                  "the same module calls, per partition")
        finally:
            for cluster, client in clusters.values():
                client.close()
                cluster.close()
    print("\n" + load_header(), "(end)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
