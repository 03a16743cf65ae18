"""Text embeddings on Dask: sentences per second with 1 and 2 worker processes vs one process.

Usage: ``python scripts/bench_dask.py [--vocab 100000] [--dim 300] [--sentences 131072]
[--partition-rows 8192] [--batch-size 1024] [--rounds 3] [--small 16,128] [--no-dask-defaults] [--isolated]``

``--isolated`` measures each contender alone instead (no other cluster alive in this process): what a
user who runs either one process or a cluster sees; see ``isolated()``.

Like with like. Every BLAS/OpenMP/Numba thread pool is limited to one thread (OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, NUMBA_NUM_THREADS = 1, set here before NumPy loads, and inherited
by the workers), each worker runs one task thread, and every contender embeds the same sentences (the
data of scripts/bench_text.py, from scripts/_text_data.py: random words, 5-40 words per sentence, ~3%
unknown) with the same module (exported to a temporary directory, used by its path) at the same batch
size. The workers also run with this process's memory allocator settings: they are started with
``hubkit.dask.throughput_config()`` (docs/scale.md, "Throughput"), which unsets the
``MALLOC_TRIM_THRESHOLD_=65536`` Dask's nanny gives workers (with it, glibc hands freed memory back to the
kernel at once, so every large temporary of a ``Module`` call is page-faulted in again: ~8,200 minor page
faults and 20-45% more CPU per 8,192-sentence partition here) and switches off Dask's statistical
profiler. The ``dask-2 defaults`` contender keeps Dask's defaults to show what they cost (skip it with
``--no-dask-defaults``).

Contenders, run in turn round by round (so load from other work falls on all of them alike):

- ``single``: this process calls the ``Module`` over the sentences (an object array) in batches of
  ``--batch-size`` and adds each batch's column sums in float64;
- ``dask-1`` / ``dask-2``: ``hubkit.dask.map_partitions`` over a dask array of the same sentences
  (already persisted on the workers, ``--partition-rows`` per partition) on a ``LocalCluster`` of 1 or 2
  worker processes with one thread each, the module loaded on every worker beforehand, and the column
  sums in float64 taken on the workers (``.sum(axis=0, dtype=float64)``); only the sums travel to the
  client, so the figures measure the embedding work and its scheduling, not the transfer of the vectors.
  The sums are checked against each other.

CPU seconds are reported beside the wall times: on a machine shared with other work they are the
load-independent figures. The single process's CPU is the CPU time of its working thread. This process
also hosts the schedulers, nannies and clients of all the clusters, which tick even while idle; their
idle rate is measured (three 1 s sleeps) and subtracted from this process's CPU for the Dask contenders. ``CPU eff`` is the single process's CPU seconds over the contender's total
(this process, which hosts the schedulers and clients, plus every worker); ``worker eff`` the same over
the workers' CPU alone (1.00 means a worker embeds as cheaply as the plain process). The stage breakdown
splits the CPU per partition: the ``Module`` calls (worker task threads, ``hubkit.dask.cache_info``'s
``module_cpu``), hubkit's glue around them (``task_cpu`` minus that), Dask's own work in the worker
processes (their CPU minus ``task_cpu``: event loop, transfers, the sum tasks) and this process's
(scheduler and client), against the single process's CPU for the same rows.

Then the per-partition overhead at small partitions: the same 8,192 sentences in partitions of each
``--small`` size on 2 workers, against this process calling the module at that batch size; overhead =
(CPU seconds of the Dask job - CPU seconds of the same module calls in one process) / partitions. Last,
what a dataframe partition's embedding column costs to build and to serialise (as Dask does to move it
between processes) as hubkit's Arrow fixed-size list column and as an object column of NumPy vectors.
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
import warnings  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _text_data import NUM_OOV_BUCKETS, text_data  # noqa: E402
from _timing import load_header  # noqa: E402
from export_text_embedding import export_words  # noqa: E402

import hubkit as hk  # noqa: E402

MALLOC_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def single_process(module: hk.Module, sentences: np.ndarray, batch: int) -> np.ndarray:
    total = np.zeros(module.get_output_info_dict()["default"].get_shape()[1], np.float64)
    for start in range(0, len(sentences), batch):
        total += module(sentences[start : start + batch]).sum(axis=0, dtype=np.float64)
    return total


def start_cluster(workers: int, dask_defaults: bool):
    """A LocalCluster of ``workers`` one-thread processes, with hubkit.dask.throughput_config() unless ``dask_defaults``."""
    import dask
    from distributed import Client, LocalCluster

    import hubkit.dask as hd

    saved = {k: os.environ.get(k) for k in MALLOC_VARS}
    try:
        with dask.config.set({} if dask_defaults else hd.throughput_config()):
            cluster = LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None,
                                   silence_logs=logging.CRITICAL, memory_limit=0)
    finally:  # the nanny writes its pre-spawn environment into this process's: later clusters must not inherit it
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return cluster, Client(cluster, set_as_default=False)


def dask_job(client, path: str, sentences: np.ndarray, rows: int, batch: int):
    """A function running the embedding job on ``client``'s cluster (the input already persisted there)."""
    import dask.array as da

    import hubkit.dask as hd

    data = client.persist(da.from_array(sentences, chunks=rows))
    total = hd.map_partitions(path, data, batch_size=batch).sum(axis=0, dtype=np.float64)
    return lambda: client.compute(total).result()


def _warm(path: str, batch: int, sample: list[str]) -> None:
    """Runs on a worker: loads the module into hubkit.dask's per-process cache and calls it once (kernels compile)."""
    from hubkit.dask._signature import plan_job
    from hubkit.dask._worker import get_module

    get_module(plan_job(path, "default", None, batch, None, False))(sample)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def _worker_state(path: str) -> dict[str, float]:
    """Runs on a worker: its CPU seconds, minor page faults, and hubkit.dask's counters for ``path``."""
    import resource

    import hubkit.dask as hd

    state = {"cpu": time.process_time(), "faults": float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt),
             "task_cpu": 0.0, "module_cpu": 0.0, "partitions": 0.0, "rows": 0.0}
    for entry in hd.cache_info()["modules"]:
        if entry["handle"] == path:
            for name in ("task_cpu", "module_cpu", "partitions", "rows"):
                state[name] += entry[name]
    return state


IDLE_CPU = [0.0]  # CPU seconds per second this process burns with every cluster idle (set by main)


class Cost:
    """Wall and CPU seconds of one call (this process, with the schedulers and clients) and the workers' work.

    ``main`` is the CPU of this process's work: for the single process the CPU time of its one working
    thread; for a cluster this process's CPU minus its idle rate (``IDLE_CPU``) over the call, as the
    schedulers, nannies and clients of every cluster live here and tick while any contender runs.
    """

    def __init__(self, wall: float, main: float, workers: dict[str, dict[str, float]]) -> None:
        self.wall, self.main, self.workers = wall, main, workers

    def total(self, name: str) -> float:
        return sum(w[name] for w in self.workers.values())

    @property
    def cpu(self) -> float:
        return self.main + self.total("cpu")

    def bound(self, cores: int) -> float:
        """Least wall time this CPU work needs on ``cores`` idle cores: the busiest process, or all of it shared."""
        return max([self.main, *(w["cpu"] for w in self.workers.values()), self.cpu / cores])


def cost_of(fn, client=None, path: str = "") -> tuple[Cost, object]:
    """The :class:`Cost` and result of one call.

    CPU time is much less sensitive than wall time to other work on a shared machine: the ratio of the
    single process's CPU to a cluster's total CPU for the same sentences is the parallel efficiency.
    """
    before = client.run(_worker_state, path) if client else {}
    clock = time.process_time if client else time.thread_time  # the single process works in this thread alone
    main0 = clock()
    wall, result = timed(fn)
    main = clock() - main0
    after = client.run(_worker_state, path) if client else {}
    workers = {w: {k: after[w][k] - before.get(w, {}).get(k, 0.0) for k in after[w]} for w in after}
    if client:
        main = max(0.0, main - IDLE_CPU[0] * wall)
    return Cost(wall, main, workers), result


def dataframe_outputs(vectors: np.ndarray, rounds: int) -> None:
    """CPU ms to build and serialise one partition's embedding column: fixed-size list vs object column."""
    import pandas as pd
    import pyarrow as pa
    from distributed.protocol import deserialize_bytes, serialize_bytelist

    def fixed_list():
        cells = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
        return pd.DataFrame({"default": pd.Series(pd.arrays.ArrowExtensionArray(cells))})

    def objects():
        cells = np.empty(len(vectors), dtype=object)
        for i in range(len(vectors)):
            cells[i] = vectors[i]
        return pd.DataFrame({"default": cells})

    print(f"\none partition's dataframe output ({len(vectors):,} rows of {vectors.shape[1]} float32), CPU ms, best of "
          f"{rounds}:")
    print(f"{'column':>28} {'build':>7} {'serialise':>10} {'deserialise':>12}")
    for name, build in (("fixed-size list (hubkit)", fixed_list), ("object column of arrays", objects)):
        best = [float("inf")] * 3
        for _ in range(rounds):
            t0 = time.process_time()
            frame = build()
            t1 = time.process_time()
            frames = serialize_bytelist(frame)
            t2 = time.process_time()
            deserialize_bytes(b"".join(frames))
            t3 = time.process_time()
            best = [min(b, t) for b, t in zip(best, (t1 - t0, t2 - t1, t3 - t2))]
        print(f"{name:>28} {best[0] * 1e3:>7.1f} {best[1] * 1e3:>10.1f} {best[2] * 1e3:>12.1f}")


def idle_rates(clients: dict, seconds: float = 1.0, samples: int = 3) -> tuple[float, dict[str, float]]:
    """CPU seconds per second used while idle: this process's, and the workers' of each client's cluster in all.

    Medians of ``samples`` sleeps of ``seconds``.
    """
    here: list[float] = []
    workers: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(samples):
        before = {name: client.run(time.process_time) for name, client in clients.items()}
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        used, elapsed = time.process_time() - cpu, time.perf_counter() - wall
        for name, client in clients.items():
            after = client.run(time.process_time)
            workers[name].append(sum(after[w] - before[name][w] for w in after) / elapsed)
        here.append(used / elapsed)
    return statistics.median(here), {name: statistics.median(r) for name, r in workers.items()}


def isolated(module: hk.Module, path: str, sentences: np.ndarray, texts: list[str], args) -> None:
    """One contender alive at a time: the single process with no cluster running, then each cluster alone.

    In the interleaved run every cluster lives in this process for the whole benchmark, so the idle
    schedulers, nannies and workers of the others (80-170 ms of CPU per second here) take CPU that the
    2-worker contender needs from both cores, while the single process needs only one. Here each
    contender runs as a user would run it: alone. The single process is timed before and after the
    clusters (so a drift in the machine shows), each contender ``--rounds`` times after a warm-up.
    """
    n = len(sentences)

    def single() -> list[float]:
        single_process(module, sentences, args.batch_size)
        return [timed(lambda: single_process(module, sentences, args.batch_size))[0] for _ in range(args.rounds)]

    walls = {"single": single()}
    for workers in (1, 2):
        cluster, client = start_cluster(workers, False)
        try:
            client.run(_warm, path, args.batch_size, texts[: args.batch_size])
            job = dask_job(client, path, sentences, args.partition_rows, args.batch_size)
            job()
            walls[f"dask-{workers}"] = [timed(job)[0] for _ in range(args.rounds)]
        finally:
            client.close()
            cluster.close()
    walls["single"] += single()
    base, best = statistics.median(walls["single"]), min(walls["single"])
    print(f"\nisolated: one contender alive at a time, {n:,} sentences, {args.partition_rows:,} rows per partition, "
          f"{args.rounds} rounds each (single: {args.rounds} before and {args.rounds} after the clusters)")
    print(f"{'contender':>15} {'sentences/s':>12} {'vs single':>10} {'best vs best':>13}")
    for name, times in walls.items():
        print(f"{name:>15} {n / statistics.median(times):>12,.0f} {base / statistics.median(times):>9.2f}x "
              f"{best / min(times):>12.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--sentences", type=int, default=131_072)
    parser.add_argument("--partition-rows", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", default="16,128", help="partition sizes of the overhead measurement")
    parser.add_argument("--no-dask-defaults", action="store_true",
                        help="skip the contender whose workers run with Dask's defaults")
    parser.add_argument("--isolated", action="store_true",
                        help="only the isolated run: each contender alone, no other cluster alive")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*(already in use|Sending large graph).*")
    print(load_header(), "(start)")
    print("threads: OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS=1 here and in every worker; 1 thread per worker; "
          f"malloc settings here: { {k: os.environ[k] for k in MALLOC_VARS if k in os.environ} or 'glibc defaults'}")
    rng = np.random.default_rng(0)
    words, embeddings, texts = text_data(rng, args.vocab, args.dim, args.sentences)
    sentences = np.array(texts, dtype=object)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "text_module")
        export_words(words, embeddings, path, num_oov_buckets=NUM_OOV_BUCKETS)
        module = hk.Module(path)
        if args.isolated:
            isolated(module, path, sentences, texts, args)
            print("\n" + load_header(), "(end)")
            return 0
        specs = {"dask-1": (1, False), "dask-2": (2, False)}
        if not args.no_dask_defaults:
            specs["dask-2 defaults"] = (2, True)
        clusters = {}
        try:
            for name, (workers, dask_defaults) in specs.items():
                clusters[name] = start_cluster(workers, dask_defaults)
            jobs = {
                "single": lambda: single_process(module, sentences, args.batch_size),
                **{name: dask_job(c[1], path, sentences, args.partition_rows, args.batch_size)
                   for name, c in clusters.items()},
            }
            clients = {"single": None, **{name: c[1] for name, c in clusters.items()}}
            for _, client in clusters.values():  # every worker loads the module before anything is timed
                client.run(_warm, path, args.batch_size, texts[: args.batch_size])
            for name, fn in jobs.items():  # warm-up: the module loads on every worker, kernels compile
                seconds = timed(fn)[0]
                print(f"warm-up {name}: {seconds:.2f} s")
            IDLE_CPU[0], worker_idle = idle_rates({name: c[1] for name, c in clusters.items()})
            print(f"idle CPU: this process (schedulers, nannies, clients of {len(clusters)} clusters) "
                  f"{IDLE_CPU[0] * 1e3:.1f} ms per second, subtracted from its CPU for the Dask contenders; the workers of "
                  + ", ".join(f"{name} {rate * 1e3:.1f}" for name, rate in worker_idle.items()) + " ms per second")
            costs: dict[str, list[Cost]] = {k: [] for k in jobs}
            results = {}
            for _ in range(args.rounds):
                for name, fn in jobs.items():
                    cost, results[name] = cost_of(fn, clients[name], path)
                    costs[name].append(cost)
            for name in clusters:
                np.testing.assert_allclose(results[name], results["single"], rtol=1e-5)
            parts = -(-args.sentences // args.partition_rows)
            print(f"\n{args.sentences:,} sentences, vocabulary {args.vocab:,} + {NUM_OOV_BUCKETS} OOV buckets, dim "
                  f"{args.dim}, batch {args.batch_size}, {args.partition_rows:,} rows per partition ({parts} "
                  f"partitions), median of {args.rounds} interleaved rounds")
            print(f"{'contender':>15} {'sentences/s':>12} {'vs single':>10} {'CPU s':>7} {'CPU eff':>8} "
                  f"{'worker eff':>11} {'idle-core bound':>16} {'faults/part':>12}")

            def median(name: str, what) -> float:
                return statistics.median(what(c) for c in costs[name])

            base, base_cpu = median("single", lambda c: c.wall), median("single", lambda c: c.cpu)
            for name in jobs:
                cores = specs[name][0] if name in specs else 1
                wall, cpu = median(name, lambda c: c.wall), median(name, lambda c: c.cpu)
                bound = median(name, lambda c, cores=cores: c.bound(cores))
                if name in specs:
                    worker_eff = f"{base_cpu / median(name, lambda c: c.total('cpu')):>11.2f}"
                    faults = f"{median(name, lambda c: c.total('faults')) / parts:>12,.0f}"
                else:
                    worker_eff, faults = f"{'':>11}", f"{'':>12}"
                print(f"{name:>15} {args.sentences / wall:>12,.0f} {base / wall:>9.2f}x {cpu:>7.2f} "
                      f"{base_cpu / cpu:>8.2f} {worker_eff} {base_cpu / bound:>15.2f}x {faults}")
            print("CPU s: this process (schedulers and clients included) plus the workers; CPU eff / worker eff: the "
                  "single process's CPU seconds over the contender's total / its workers'; idle-core bound: the single "
                  "process's CPU seconds over the least wall time the contender's CPU work needs on 1 or 2 idle cores "
                  "(its busiest process, or its total CPU shared over the cores): the speed-up the same work allows on "
                  "an idle machine; faults/part: the workers' minor page faults per partition")

            per_part = 1e3 / parts
            print(f"\nCPU ms per {args.partition_rows:,}-row partition (median of {args.rounds}; single: "
                  f"{base_cpu * per_part:.1f} ms for the same rows)")
            print(f"{'contender':>15} {'Module calls':>13} {'hubkit glue':>12} {'Dask, workers':>14} {'(idle)':>7} "
                  f"{'this process':>13} {'total':>7} {'overhead':>9}")
            for name in clusters:
                module_cpu = median(name, lambda c: c.total("module_cpu")) * per_part
                glue = median(name, lambda c: c.total("task_cpu") - c.total("module_cpu")) * per_part
                dask_work = median(name, lambda c: c.total("cpu") - c.total("task_cpu")) * per_part
                here = median(name, lambda c: c.main) * per_part
                total = median(name, lambda c: c.cpu) * per_part
                idle = worker_idle[name] * median(name, lambda c: c.wall) * per_part
                print(f"{name:>15} {module_cpu:>13.1f} {glue:>12.1f} {dask_work:>14.1f} {idle:>7.1f} {here:>13.1f} "
                      f"{total:>7.1f} {total - base_cpu * per_part:>9.1f}")
            print("Module calls: CPU of the worker task threads inside Module calls (cache_info's module_cpu); hubkit "
                  "glue: the rest of the partition tasks; Dask, workers: the worker processes' other CPU (event loop, "
                  "transfers, the sum tasks), of which (idle) is their idle rate times the wall time, which grows "
                  "when other work stretches the wall time; this process: scheduler and client; overhead: total "
                  "minus single")

            subset = sentences[:8192]
            client = clusters["dask-2"][1]
            print(f"\nper-partition overhead, {len(subset):,} sentences on 2 workers (median of {args.rounds}):")
            print(f"{'rows/part':>10} {'parts':>6} {'wall s':>7} {'CPU s':>7} {'single CPU s':>13} "
                  f"{'overhead/part':>14} {'of which glue':>14}")
            for rows in (int(r) for r in args.small.split(",")):
                fns = {"dask": dask_job(client, path, subset, rows, min(rows, args.batch_size)),
                       "single": lambda rows=rows: single_process(module, subset, rows)}
                for fn in fns.values():
                    fn()
                small: dict[str, list[Cost]] = {k: [] for k in fns}
                for _ in range(args.rounds):
                    for name, fn in fns.items():
                        small[name].append(cost_of(fn, client if name == "dask" else None, path)[0])
                n = -(-len(subset) // rows)
                dask_cpu = statistics.median(c.cpu for c in small["dask"])
                alone = statistics.median(c.cpu for c in small["single"])
                glue = statistics.median(c.total("task_cpu") - c.total("module_cpu") for c in small["dask"])
                wall_s = statistics.median(c.wall for c in small["dask"])
                print(f"{rows:>10} {n:>6} {wall_s:>7.3f} {dask_cpu:>7.3f} {alone:>13.3f} "
                      f"{(dask_cpu - alone) / n * 1e3:>11.2f} ms {glue / n * 1e3:>11.2f} ms")
            print("overhead/part: CPU seconds of the Dask job (workers, scheduler, client) minus this process's for "
                  "the same module calls, per partition; of which glue: hubkit's work in the task around the calls")
            dataframe_outputs(module(sentences[: args.partition_rows]), args.rounds)
        finally:
            for cluster, client in reversed(clusters.values()):  # reversed: each restores the log level it found
                client.close()
                cluster.close()
    print("\n" + load_header(), "(end)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
