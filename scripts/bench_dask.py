"""Text embeddings on Dask: sentences per second with 1 and 2 worker processes vs one process.

Usage: ``python scripts/bench_dask.py [--vocab 100000] [--dim 300] [--sentences 524288]
[--partition-rows 16384] [--batch-size 1024] [--rounds 5] [--control-seconds 0.5] [--small 16,128]
[--collect SENTENCES] [--no-dask-defaults]``

Earlier versions measured 131,072 sentences in 8,192-row partitions already persisted on the workers
(shipped from this process before timing), with three clusters alive in turns or each contender alone
(``--isolated``); their figures are not comparable with these. See "The job" and "Turns" below.

The job. It is what a pipeline whose data outgrows one machine does: the sentences are in files, one
per partition (``--partition-rows`` sentences per file, written to a temporary directory before
anything is timed); every contender reads the files, embeds the sentences with the text module in
batches of ``--batch-size``, and reduces the embeddings to their column sums in float64. Contenders:

- ``single``: this process reads each file and calls the ``Module`` on its batches (the baseline);
- ``1 process``: the same in one of the plain processes below, alone: a check that the baseline is not
  slowed by living in this process (which also hosts the cluster's scheduler, nannies and client);
- ``2 processes``: two plain Python processes (``multiprocessing``, spawned, no Dask) take the files
  from a shared counter and do the same; they have no framework overhead at all, so their speed-up is
  the bound this hardware sets (two processes share the L3 cache and memory bandwidth, and the
  module's table lookups are memory-bound);
- ``dask-1`` / ``dask-2``: ``hubkit.dask.map_partitions`` over a dask array whose blocks are the
  files' sentences (``da.map_blocks`` reading file ``block_id``: reading, embedding and the sums fuse
  into one task per file, so each worker reads its own partitions) on one ``LocalCluster`` of 2 worker
  processes with one thread each, started with ``hubkit.dask.throughput_config()``; ``dask-1`` is the
  same job restricted to one of the two workers (``client.compute(..., workers=[one])``). The column sums are taken on the workers
  (``.sum(axis=0, dtype=float64)``), so only 300 floats per partition travel to the client: a job
  that writes its outputs out or reduces them, not one that gathers every vector into one process.
  The sums of all contenders are checked against each other.

``--collect N`` adds a job that gathers the embeddings instead (the first N sentences' files): Dask's
``client.compute(embeddings).result()`` (every partition serialised on its worker, sent over TCP and
put together into one ``[N, dim]`` array in this process) against the single process copying its
batches' outputs into a preallocated array.

Turns. The contenders take turns round by round (so load from other work falls on all of them
alike; each round starts one contender later, so none always runs first or right after the same
other), and only one cluster and one pair of plain processes are alive while they run (idle, they
take ~1% of the two cores). A job of 524,288 sentences in 32 partitions of 16,384 (~4 s for one
process, 16 partitions per worker) keeps three costs that a pipeline over millions of sentences does
not pay per sentence small: the fixed cost of a job (building and submitting the graph, the first and
last round trips: tens of ms, printed as ``job latency``), the tail at its end (when one worker has
finished and the other runs its last partition) and Dask's cost per task (~5-10 ms of CPU in the
scheduler and the worker, printed in the breakdown; a partition of 16,384 sentences is ~150 ms of work,
Dask's advice is tasks of 100 ms or more).

The machine's bound, every round. On this shared VM even pure interpreter work in two processes gets
anywhere from 1.0x to 1.9x of one process's throughput from one moment to the next (other sessions'
processes take the cores: the kernel shares CPU between sessions, not processes). So every round first
runs a control, :func:`control_loop` (an integer loop with no memory traffic to speak of) in one plain
process and then in both at once, and the per-round table gives each contender's throughput over the
single process's *in the same round* (paired ratios, and their median), beside the control's 2-process
scaling of that round (``control 2p``) and dask-2's share of it. Where ``control 2p`` is near 2.0 the
cores were free and the contenders' ratios are the hardware's; where it is lower, no contender could
have scaled further at that moment. ``2 proc CPU eff`` separates the workload's own contention from
the machine's: one plain process's CPU seconds over the two plain processes' for the same sentences
(a process stalled on a cache miss still burns CPU time, so contention for the shared L3 cache and
memory shows as more CPU per sentence, while CPU taken by other sessions does not).

Like with like. Every BLAS/OpenMP/Numba thread pool is limited to one thread (OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, NUMBA_NUM_THREADS = 1, set here before NumPy loads, and inherited
by every child process), each worker runs one task thread, and every contender embeds the same sentences
(the data of scripts/bench_text.py, from scripts/_text_data.py: random words, 5-40 words per sentence,
~3% unknown) with the same module (exported to a temporary directory, used by its path) at the same batch
size. The workers run with ``hubkit.dask.throughput_config()`` (docs/scale.md, "Throughput"): without
Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` (~8,200 minor page faults and 20-45% more CPU per
8,192-sentence partition here), without the statistical profiler, with a 1 s event-loop tick. Then, on
a second cluster with Dask's defaults, ``dask-2 defaults`` against ``single`` again shows what the
defaults cost (skip it with ``--no-dask-defaults``).

CPU seconds are reported beside the wall times: on a machine shared with other work they are the
load-independent figures (though not free of it: under load every process's CPU per sentence moves
by 5-10% as others evict its cache). The single process's CPU is the CPU time of its working thread,
the plain processes' their process CPU. This process also hosts the cluster's scheduler, nannies and client,
which tick even while idle; their idle rate is measured (three 1 s sleeps) and subtracted from this
process's CPU for the Dask contenders. ``CPU eff`` is the single process's CPU seconds over the
contender's total (this process plus every worker or plain process); ``worker eff`` the same over the
workers' (or plain processes') CPU alone (1.00: as cheap as the baseline). The breakdown splits every
contender's CPU per partition: the ``Module`` calls (timed around each call by the single and plain
processes; in the workers ``hubkit.dask.cache_info``'s ``module_cpu``), hubkit's glue around them
(``task_cpu`` minus that: putting the batches' outputs together into the partition's array), the rest
of the working processes (reading the files, the column sums, and for Dask its event loop, messages
and task bookkeeping) and this process's (scheduler and client).

Then the fixed cost of one job (2 partitions of 16 sentences), the per-partition overhead at small
partitions (the same 8,192 sentences, in memory on the workers, in partitions of each ``--small`` size
on 2 workers, against this process calling the module at that batch size; overhead = (CPU seconds of
the Dask job - CPU seconds of the same module calls in one process) / partitions), and last what a
dataframe partition's embedding column costs to build and to serialise (as Dask does to move it between
processes) as hubkit's Arrow fixed-size list column and as an object column of NumPy vectors.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
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


def write_partitions(sentences: list[str], rows: int, directory: str) -> list[tuple[str, int]]:
    """One UTF-8 file per ``rows`` sentences, a sentence per line: ``[(file, rows in it), ...]``."""
    os.makedirs(directory, exist_ok=True)
    files = []
    for number, start in enumerate(range(0, len(sentences), rows)):
        chunk = sentences[start : start + rows]
        name = os.path.join(directory, f"part-{number:05d}.txt")
        with open(name, "w", encoding="utf-8") as f:
            f.write("\n".join(chunk))
        files.append((name, len(chunk)))
    return files


def read_partition(file: str) -> np.ndarray:
    """A partition's sentences, as an object array (the sentences hold no newlines)."""
    with open(file, encoding="utf-8") as f:
        return np.array(f.read().split("\n"), dtype=object)


def embed_sum(module: hk.Module, sentences: np.ndarray, batch: int, total: np.ndarray) -> float:
    """Adds the column sums of the sentences' embeddings to ``total``; returns the CPU seconds of the Module calls."""
    module_cpu = 0.0
    for start in range(0, len(sentences), batch):
        began = time.thread_time()
        vectors = module(sentences[start : start + batch])
        module_cpu += time.thread_time() - began
        total += vectors.sum(axis=0, dtype=np.float64)
    return module_cpu


def single_process(module: hk.Module, files: list[tuple[str, int]], batch: int) -> tuple[np.ndarray, float]:
    """The baseline: the column sums of every file's embeddings, and the CPU seconds of the Module calls."""
    total = np.zeros(module.get_output_info_dict()["default"].get_shape()[1], np.float64)
    module_cpu = 0.0
    for file, _ in files:
        module_cpu += embed_sum(module, read_partition(file), batch, total)
    return total, module_cpu


# -- two plain processes: the hardware's bound ------------------------------------------------------
def control_loop(iterations: int) -> int:
    """The control: pure interpreter work on a few integers (no memory traffic beyond L1/L2).

    Two processes running it at once are slowed only by what the machine does to any CPU work (other
    sessions' processes sharing the cores, the hypervisor), never by cache or memory contention, so its
    2-process scaling is the machine's bound at that moment.
    """
    x = 0
    for i in range(iterations):
        x = (x + i * i) & 0xFFFF
    return x


def _plain_process(path: str, files: list[tuple[str, int]], batch: int, counter, conn) -> None:
    """Runs in a spawned child: loads the module, then on each ``go`` embeds files from the shared counter."""
    module = hk.Module(path)
    dim = module.get_output_info_dict()["default"].get_shape()[1]
    embed_sum(module, read_partition(files[0][0])[:batch], batch, np.zeros(dim))
    conn.send("ready")
    while (message := conn.recv()) != "stop":
        if message != "go":  # ("control", iterations)
            began, cpu = time.perf_counter(), time.process_time()
            control_loop(message[1])
            conn.send((time.perf_counter() - began, time.process_time() - cpu))
            continue
        cpu, module_cpu = time.process_time(), 0.0
        total = np.zeros(dim)
        while True:
            with counter.get_lock():
                number = counter.value
                counter.value += 1
            if number >= len(files):
                break
            module_cpu += embed_sum(module, read_partition(files[number][0]), batch, total)
        conn.send((total, time.process_time() - cpu, module_cpu))


class PlainProcesses:
    """``n`` plain processes (spawned like Dask's workers) sharing the files of one job through a counter."""

    def __init__(self, n: int, path: str, files: list[tuple[str, int]], batch: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.counter = ctx.Value("l", 0)
        self.conns, self.procs = [], []
        for _ in range(n):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_plain_process, args=(path, files, batch, self.counter, there), daemon=True)
            proc.start()
            self.conns.append(here)
            self.procs.append(proc)
        for conn in self.conns:
            conn.recv()
        self.last_cpu: dict[str, dict[str, float]] = {}

    def run(self, processes: int = 0) -> np.ndarray:
        """The job in the first ``processes`` processes (all by default): the files' column sums."""
        conns = self.conns[: processes or len(self.conns)]
        with self.counter.get_lock():
            self.counter.value = 0
        for conn in conns:
            conn.send("go")
        results = [conn.recv() for conn in conns]
        self.last_cpu = {f"process {i}": {"cpu": cpu, "module_cpu": module, "task_cpu": module}
                         for i, (_, cpu, module) in enumerate(results)}
        return sum(total for total, _, _ in results)

    def control(self, processes: int, iterations: int) -> list[tuple[float, float]]:
        """(wall, CPU) seconds of :func:`control_loop` run at once in the first ``processes`` processes."""
        for conn in self.conns[:processes]:
            conn.send(("control", iterations))
        return [conn.recv() for conn in self.conns[:processes]]

    def close(self) -> None:
        for conn in self.conns:
            conn.send("stop")
        for proc in self.procs:
            proc.join(timeout=10)


# -- the Dask cluster ----------------------------------------------------------------------------
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


def _read_block(files: list[str], block_id: tuple[int, ...]) -> np.ndarray:
    return read_partition(files[block_id[0]])


def dask_file_job(client, path: str, files: list[tuple[str, int]], batch: int, workers: list[str] | None = None):
    """The job on ``client``'s cluster: read each file, embed, column sums (on ``workers`` only, if given).

    Reading (a block per file, found by its ``block_id``), embedding and the partition's column sums are
    blockwise, so Dask fuses them into one task per file: a worker reads its own partitions, and only the
    sums leave it. (Reading through a dask array of file names instead adds a second, aliasing task per
    partition when Dask fuses the name's task into the rest: twice the scheduling per partition.)
    """
    import dask.array as da

    import hubkit.dask as hd

    sentences = da.map_blocks(_read_block, [file for file, _ in files], chunks=(tuple(rows for _, rows in files),),
                              dtype=object, meta=np.empty(0, dtype=object))
    total = hd.map_partitions(path, sentences, batch_size=batch).sum(axis=0, dtype=np.float64)
    return lambda: client.compute(total, workers=workers).result()


def single_collect(module: hk.Module, files: list[tuple[str, int]], batch: int) -> tuple[np.ndarray, float]:
    """The baseline of ``--collect``: every embedding in one ``[n, dim]`` array in this process."""
    n = sum(rows for _, rows in files)
    out = np.empty((n, module.get_output_info_dict()["default"].get_shape()[1]), np.float32)
    module_cpu, row = 0.0, 0
    for file, _ in files:
        sentences = read_partition(file)
        for start in range(0, len(sentences), batch):
            began = time.thread_time()
            vectors = module(sentences[start : start + batch])
            module_cpu += time.thread_time() - began
            out[row : row + len(vectors)] = vectors
            row += len(vectors)
    return out, module_cpu


def dask_collect_job(client, path: str, files: list[tuple[str, int]], batch: int):
    """Every embedding gathered into one array in this process: ``client.compute(embeddings).result()``."""
    import dask.array as da

    import hubkit.dask as hd

    sentences = da.map_blocks(_read_block, [file for file, _ in files], chunks=(tuple(rows for _, rows in files),),
                              dtype=object, meta=np.empty(0, dtype=object))
    embeddings = hd.map_partitions(path, sentences, batch_size=batch)
    return lambda: client.compute(embeddings).result()


def dask_memory_job(client, path: str, sentences: np.ndarray, rows: int, batch: int):
    """The job on sentences already persisted on the workers (for the small-partition overhead)."""
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


IDLE_CPU = [0.0, 0.0]  # CPU seconds per second burnt idle by this process and by the workers (set by compare)


class Cost:
    """Wall and CPU seconds of one call: this process's (scheduler and client) and the working processes'.

    ``workers`` holds, per working process (a Dask worker, a plain process, or for the single process
    its working thread), its CPU seconds (``cpu``), those of the task code (``task_cpu``) and of the
    Module calls in it (``module_cpu``). ``main`` is this process's other CPU: for a cluster this
    process's CPU minus its idle rate (``IDLE_CPU``) over the call, as the scheduler, nannies and client
    live here and tick while any contender runs; for the plain processes the CPU of the calling thread.
    """

    def __init__(self, wall: float, main: float, workers: dict[str, dict[str, float]]) -> None:
        self.wall, self.main, self.workers = wall, main, workers

    def total(self, name: str) -> float:
        return sum(w.get(name, 0.0) for w in self.workers.values())

    @property
    def cpu(self) -> float:
        return self.main + self.total("cpu")

    def bound(self, cores: int) -> float:
        """Least wall time this CPU work needs on ``cores`` idle cores: the busiest process, or all of it shared."""
        return max([self.main, *(w["cpu"] for w in self.workers.values()), self.cpu / cores])


def cost_of(fn, client=None, path: str = "", plain: PlainProcesses | None = None) -> tuple[Cost, object]:
    """The :class:`Cost` and result of one call.

    CPU time is much less sensitive than wall time to other work on a shared machine: the ratio of the
    single process's CPU to a contender's total CPU for the same sentences is the parallel efficiency.
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
    elif plain is not None:
        workers = plain.last_cpu
    else:  # the single process: this thread did the work
        result, module_cpu = result
        workers, main = {"this process": {"cpu": main, "task_cpu": module_cpu, "module_cpu": module_cpu}}, 0.0
    return Cost(wall, main, workers), result


def idle_rates(client, seconds: float = 1.0, samples: int = 3) -> tuple[float, float]:
    """CPU seconds per second used while idle by this process and by the cluster's workers: medians of 1 s sleeps."""
    here: list[float] = []
    workers: list[float] = []
    for _ in range(samples):
        before = client.run(time.process_time)
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        used, elapsed = time.process_time() - cpu, time.perf_counter() - wall
        after = client.run(time.process_time)
        workers.append(sum(after[w] - before[w] for w in after) / elapsed)
        here.append(used / elapsed)
    return statistics.median(here), statistics.median(workers)


def median_of(costs: list[Cost], what) -> float:
    return statistics.median(what(c) for c in costs)


def report(costs: dict[str, list[Cost]], cores: dict[str, int], sentences: int, parts: int) -> None:
    print(f"{'contender':>16} {'sentences/s':>12} {'vs single':>10} {'best/best':>10} {'CPU s':>7} {'CPU eff':>8} "
          f"{'worker eff':>11} {'idle-core bound':>16} {'faults/part':>12}")
    base, base_best = median_of(costs["single"], lambda c: c.wall), min(c.wall for c in costs["single"])
    base_cpu = median_of(costs["single"], lambda c: c.cpu)
    for name, runs in costs.items():
        wall, cpu = median_of(runs, lambda c: c.wall), median_of(runs, lambda c: c.cpu)
        bound = median_of(runs, lambda c, n=cores[name]: c.bound(n))
        if name != "single":
            worker_eff = f"{base_cpu / median_of(runs, lambda c: c.total('cpu')):>11.2f}"
        else:
            worker_eff = f"{'':>11}"
        faults = f"{median_of(runs, lambda c: c.total('faults')) / parts:>12,.0f}" if name.startswith("dask") else ""
        print(f"{name:>16} {sentences / wall:>12,.0f} {base / wall:>9.2f}x {base_best / min(c.wall for c in runs):>9.2f}x "
              f"{cpu:>7.2f} {base_cpu / cpu:>8.2f} {worker_eff} {base_cpu / bound:>15.2f}x {faults}")


def breakdown(costs: dict[str, list[Cost]], parts: int, rows: int, worker_idle: float) -> None:
    per_part = 1e3 / parts
    base_cpu = median_of(costs["single"], lambda c: c.cpu)
    print(f"\nCPU ms per {rows:,}-row partition (medians of the rounds)")
    print(f"{'contender':>16} {'Module calls':>13} {'hubkit glue':>12} {'rest, workers':>14} {'(idle)':>7} "
          f"{'this process':>13} {'total':>7} {'overhead':>9}")
    for name, runs in costs.items():
        module_cpu = median_of(runs, lambda c: c.total("module_cpu")) * per_part
        glue = median_of(runs, lambda c: c.total("task_cpu") - c.total("module_cpu")) * per_part
        rest = median_of(runs, lambda c: c.total("cpu") - c.total("task_cpu")) * per_part
        here = median_of(runs, lambda c: c.main) * per_part
        total = median_of(runs, lambda c: c.cpu) * per_part
        idle = f"{worker_idle * median_of(runs, lambda c: c.wall) * per_part:>7.1f}" if name.startswith("dask") else ""
        print(f"{name:>16} {module_cpu:>13.1f} {glue:>12.1f} {rest:>14.1f} {idle:>7} {here:>13.1f} "
              f"{total:>7.1f} {total - base_cpu * per_part:>9.1f}")
    print("Module calls: CPU of the working threads inside Module calls (for Dask cache_info's module_cpu); "
          "hubkit glue: the rest of the partition tasks (putting the batches' outputs together); rest, workers: "
          "the working processes' other CPU (reading the files and the column sums; for Dask also its event "
          "loop, messages and task bookkeeping, of which (idle) is the workers' idle rate times the wall time, "
          "both workers' for dask-1 too); this process: scheduler and client; overhead: total minus single")


def rounds_of(jobs: dict, rounds: int, measure, each_round=None) -> tuple[dict[str, list[Cost]], dict[str, object]]:
    """Every job once per round, in turn, each round starting one job later (so a contender is not always the
    one that runs just after another, or first after the control); ``each_round()`` (the control) first."""
    costs: dict[str, list[Cost]] = {k: [] for k in jobs}
    results: dict[str, object] = {}
    names = list(jobs)
    for r in range(rounds):
        if each_round is not None:
            each_round()
        for name in names[r % len(names):] + names[: r % len(names)]:  # each round starts one contender later
            cost, results[name] = measure(name)
            costs[name].append(cost)
    return costs, results


class Control:
    """The machine's 2-process bound, measured in every round: :func:`control_loop` in 1 and then 2 processes.

    ``scaling[r]`` is round r's throughput of two processes over one (2 x the one's wall time over the
    slower of the two's): 2.00 on two idle cores; less when other work takes CPU from this job or the
    hypervisor runs the two vCPUs slower together. ``cpu_ratio[r]`` is the mean CPU seconds of the two
    over the one's (above 1 if running together makes the same work cost more CPU).
    """

    def __init__(self, plain: PlainProcesses, seconds: float) -> None:
        self.plain = plain
        probe = 300_000
        cpu = min(plain.control(1, probe)[0][1] for _ in range(3))
        self.iterations = max(probe, int(probe * seconds / max(cpu, 1e-4)))
        self.scaling: list[float] = []
        self.cpu_ratio: list[float] = []
        self.load: list[float] = []

    def __call__(self) -> None:
        self.load.append(os.getloadavg()[0])
        [(one, one_cpu)] = self.plain.control(1, self.iterations)
        two = self.plain.control(2, self.iterations)
        self.scaling.append(2 * one / max(wall for wall, _ in two))
        self.cpu_ratio.append(statistics.mean(cpu for _, cpu in two) / one_cpu)


def paired_ratios(costs: dict[str, list[Cost]], base: str = "single") -> dict[str, list[float]]:
    """Per round, the base's wall time over each contender's: throughput vs the base run in the same round."""
    return {name: [b.wall / c.wall for b, c in zip(costs[base], runs)] for name, runs in costs.items() if name != base}


def round_table(costs: dict[str, list[Cost]], control: Control) -> None:
    """Each round's paired ratios beside the control's scaling in that round, then their medians."""
    ratios = paired_ratios(costs)
    names = list(ratios)
    two, plain = "dask-2", "2 processes"
    share = [d / c for d, c in zip(ratios[two], control.scaling)] if two in ratios else []
    over_plain = [p.wall / d.wall for p, d in zip(costs[plain], costs[two])] if two in costs and plain in costs else []
    one = "1 process" if "1 process" in costs else "single"
    eff = [b.cpu / c.cpu for b, c in zip(costs[one], costs[plain])] if plain in costs else []
    print("\nper round: each contender's throughput over the single process's in the same round (paired ratios), "
          "and the control's 2-process scaling measured at the start of that round (the machine's bound then)")
    header = (f"{'round':>5} {'load':>5} {'single s':>9} " + " ".join(f"{n:>12}" for n in names)
              + f" {'control 2p':>11} {'dask-2/control':>15} {'dask-2/2 proc':>14} {'2 proc CPU eff':>15}")
    print(header)

    def row(label: str, load: str, single: str, values: list[float], rest: list[float | None]) -> str:
        cells = " ".join(f"{v:>11.2f}x" for v in values)
        extra = " ".join(" " * w if v is None else f"{v:>{w}.2f}" for v, w in zip(rest, (11, 15, 14, 15)))
        return f"{label:>5} {load:>5} {single:>9} {cells} {extra}"

    for r in range(len(costs["single"])):
        rest: list[float | None] = [control.scaling[r], share[r] if share else None,
                                    over_plain[r] if over_plain else None, eff[r] if eff else None]
        print(row(str(r + 1), f"{control.load[r]:.1f}", f"{costs['single'][r].wall:.2f}",
                  [ratios[n][r] for n in names], rest))
    med = statistics.median
    print(row("med", "", f"{med(c.wall for c in costs['single']):.2f}", [med(ratios[n]) for n in names],
              [med(control.scaling), med(share) if share else None, med(over_plain) if over_plain else None,
               med(eff) if eff else None]))
    print(f"control: {control.iterations:,} iterations of a pure-Python integer loop per process; its CPU per "
          f"iteration in 2 processes vs 1: {med(control.cpu_ratio):.2f} (median); dask-2/control: the share of the "
          "machine's bound dask-2 reached in that round; 2 proc CPU eff: one plain process's CPU seconds over the "
          "two plain processes' for the same sentences (below 1: the text module costs more CPU when two processes "
          "run it at once, i.e. they contend for caches and memory; compare with the control's figure, and note that "
          "on a loaded machine the two overlap only part of the time)")


def small_partitions(client, path: str, module: hk.Module, sentences: np.ndarray, sizes: str, batch: int,
                     rounds: int) -> None:
    subset = sentences[:8192]
    print(f"\nper-partition overhead, {len(subset):,} sentences in memory on 2 workers (median of {rounds}):")
    print(f"{'rows/part':>10} {'parts':>6} {'wall s':>7} {'CPU s':>7} {'single CPU s':>13} "
          f"{'overhead/part':>14} {'of which glue':>14}")
    for rows in (int(r) for r in sizes.split(",")):
        def alone(rows=rows):
            total = np.zeros(module.get_output_info_dict()["default"].get_shape()[1])
            return total, embed_sum(module, subset, rows, total)

        fns = {"dask": dask_memory_job(client, path, subset, rows, min(rows, batch)), "single": alone}
        for fn in fns.values():
            fn()
        small: dict[str, list[Cost]] = {k: [] for k in fns}
        for _ in range(rounds):
            for name, fn in fns.items():
                small[name].append(cost_of(fn, client if name == "dask" else None, path)[0])
        n = -(-len(subset) // rows)
        dask_cpu = median_of(small["dask"], lambda c: c.cpu)
        single_cpu = median_of(small["single"], lambda c: c.cpu)
        glue = median_of(small["dask"], lambda c: c.total("task_cpu") - c.total("module_cpu"))
        print(f"{rows:>10} {n:>6} {median_of(small['dask'], lambda c: c.wall):>7.3f} {dask_cpu:>7.3f} "
              f"{single_cpu:>13.3f} {(dask_cpu - single_cpu) / n * 1e3:>11.2f} ms {glue / n * 1e3:>11.2f} ms")
    print("overhead/part: CPU seconds of the Dask job (workers, scheduler, client) minus this process's for "
          "the same module calls, per partition; of which glue: hubkit's work in the task around the calls")


def job_latency(client, path: str, files: list[tuple[str, int]], rounds: int) -> None:
    """Wall and CPU of a job of 2 tiny partitions: the fixed cost of submitting a job and collecting its result."""
    job = dask_file_job(client, path, files, 16)
    job()
    costs = [cost_of(job, client, path)[0] for _ in range(rounds)]
    print(f"\njob latency (2 partitions of 16 sentences, median of {rounds}): wall "
          f"{median_of(costs, lambda c: c.wall) * 1e3:.1f} ms, CPU {median_of(costs, lambda c: c.cpu) * 1e3:.1f} ms "
          f"(this process {median_of(costs, lambda c: c.main) * 1e3:.1f} ms); a fixed cost per job, whatever its size")


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


def compare(module, path, files, texts, args) -> None:
    """single, 2 plain processes, dask-1 and dask-2 in turn on one 2-worker cluster; then the small-partition figures."""
    n, parts = sum(rows for _, rows in files), len(files)
    plain = PlainProcesses(2, path, files, args.batch_size)
    cluster, client = start_cluster(2, False)
    try:
        client.run(_warm, path, args.batch_size, texts[: args.batch_size])
        first = sorted(client.scheduler_info()["workers"])[0]
        jobs = {
            "single": lambda: single_process(module, files, args.batch_size),
            "1 process": lambda: plain.run(1),
            "2 processes": plain.run,
            "dask-1": dask_file_job(client, path, files, args.batch_size, workers=[first]),
            "dask-2": dask_file_job(client, path, files, args.batch_size),
        }
        for name, fn in jobs.items():  # warm-up: pages of the table and of the files in every process
            print(f"warm-up {name}: {timed(fn)[0]:.2f} s")
        IDLE_CPU[0], IDLE_CPU[1] = idle_rates(client)
        worker_idle = IDLE_CPU[1]
        print(f"idle CPU: this process (scheduler, nannies, client) {IDLE_CPU[0] * 1e3:.1f} ms per second, subtracted "
              f"from its CPU for the Dask contenders; the two workers {worker_idle * 1e3:.1f} ms per second")

        def measure(name):
            if name.startswith("dask"):
                return cost_of(jobs[name], client, path)
            return cost_of(jobs[name], plain=plain if name.endswith(("process", "processes")) else None)

        control = Control(plain, args.control_seconds)
        costs, results = rounds_of(jobs, args.rounds, measure, each_round=control)
        for name in jobs:
            np.testing.assert_allclose(results[name], results["single"], rtol=1e-5)
        print(f"\n{n:,} sentences in {parts} files of {args.partition_rows:,}, vocabulary {args.vocab:,} + "
              f"{NUM_OOV_BUCKETS} OOV buckets, dim {args.dim}, batch {args.batch_size}; median of {args.rounds} "
              "interleaved rounds (best/best: fastest run against fastest single run)")
        report(costs, {"single": 1, "1 process": 1, "2 processes": 2, "dask-1": 1, "dask-2": 2}, n, parts)
        print("CPU s: this process (scheduler and client included) plus the workers or plain processes; CPU eff / "
              "worker eff: the single process's CPU seconds over the contender's total / its workers'; idle-core "
              "bound: the single process's CPU seconds over the least wall time the contender's CPU work needs on "
              "1 or 2 idle cores (its busiest process, or its total CPU shared over the cores); faults/part: the "
              "workers' minor page faults per partition")
        round_table(costs, control)
        breakdown(costs, parts, args.partition_rows, worker_idle)
        job_latency(client, path, args.tiny_files, args.rounds)
        if args.collect:
            collect(client, path, module, files[: max(1, args.collect // args.partition_rows)], args)
        small_partitions(client, path, module, np.array(texts[:8192], dtype=object), args.small, args.batch_size,
                         args.rounds)
    finally:
        client.close()
        cluster.close()
        plain.close()


def collect(client, path: str, module: hk.Module, files: list[tuple[str, int]], args) -> None:
    """``--collect``: the embeddings gathered into this process instead of reduced on the workers."""
    n = sum(rows for _, rows in files)
    jobs = {"single collect": lambda: single_collect(module, files, args.batch_size),
            "dask-2 collect": dask_collect_job(client, path, files, args.batch_size)}
    for fn in jobs.values():
        fn()

    def measure(name):
        return cost_of(jobs[name], client, path) if name.startswith("dask") else cost_of(jobs[name])

    costs, results = rounds_of(jobs, args.rounds, measure)
    np.testing.assert_allclose(results["dask-2 collect"], results["single collect"], rtol=1e-6)
    print(f"\n--collect: every embedding of {n:,} sentences ({n * args.dim * 4 / 2**20:,.0f} MB of float32) gathered "
          f"into one array in this process (Dask: client.compute(embeddings).result(); single: copied into a "
          f"preallocated array), median of {args.rounds} interleaved rounds")
    renamed = {"single": costs["single collect"], "dask-2 collect": costs["dask-2 collect"]}
    report(renamed, {"single": 1, "dask-2 collect": 2}, n, len(files))
    breakdown(renamed, len(files), args.partition_rows, IDLE_CPU[1])


def compare_defaults(module, path, files, texts, args) -> None:
    """``single`` against 2 workers started with Dask's defaults (no throughput_config)."""
    n, parts = sum(rows for _, rows in files), len(files)
    cluster, client = start_cluster(2, True)
    try:
        client.run(_warm, path, args.batch_size, texts[: args.batch_size])
        jobs = {"single": lambda: single_process(module, files, args.batch_size),
                "dask-2 defaults": dask_file_job(client, path, files, args.batch_size)}
        for fn in jobs.values():
            fn()
        IDLE_CPU[0], worker_idle = idle_rates(client)

        def measure(name):
            return cost_of(jobs[name], client, path) if name.startswith("dask") else cost_of(jobs[name])

        costs, _ = rounds_of(jobs, args.rounds, measure)
        print(f"\nDask's defaults (no throughput_config; idle: this process {IDLE_CPU[0] * 1e3:.1f}, the workers "
              f"{worker_idle * 1e3:.1f} ms per second), median of {args.rounds} interleaved rounds")
        report(costs, {"single": 1, "dask-2 defaults": 2}, n, parts)
        breakdown(costs, parts, args.partition_rows, worker_idle)
    finally:
        client.close()
        cluster.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--sentences", type=int, default=524_288)
    parser.add_argument("--partition-rows", type=int, default=16_384)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--control-seconds", type=float, default=0.5,
                        help="CPU seconds of the control loop per process, run in 1 and 2 processes every round")
    parser.add_argument("--small", default="16,128", help="partition sizes of the overhead measurement")
    parser.add_argument("--collect", type=int, default=0, metavar="SENTENCES",
                        help="also gather the embeddings of the first SENTENCES sentences into this process")
    parser.add_argument("--no-dask-defaults", action="store_true",
                        help="skip the comparison with a cluster started with Dask's defaults")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*(already in use|Sending large graph).*")
    print(load_header(), "(start)")
    print("threads: OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS=1 here and in every child process; 1 thread per worker; "
          f"malloc settings here: { {k: os.environ[k] for k in MALLOC_VARS if k in os.environ} or 'glibc defaults'}")
    rng = np.random.default_rng(0)
    words, embeddings, texts = text_data(rng, args.vocab, args.dim, args.sentences)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "text_module")
        export_words(words, embeddings, path, num_oov_buckets=NUM_OOV_BUCKETS)
        del embeddings
        module = hk.Module(path)
        files = write_partitions(texts, args.partition_rows, os.path.join(tmp, "sentences"))
        args.tiny_files = write_partitions(texts[:32], 16, os.path.join(tmp, "tiny"))
        compare(module, path, files, texts, args)
        if not args.no_dask_defaults:
            compare_defaults(module, path, files, texts, args)
        dataframe_outputs(module(np.array(texts[: args.partition_rows], dtype=object)), args.rounds)
    print("\n" + load_header(), "(end)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
