"""Benchmark of TF1 Hub modules on hubkit, against TensorFlow when it is available.

    .venv/bin/python scripts/bench_tf1.py [--tf-python /work/tfvenv/bin/python] [--rows 6000000] [--threads 1]

1. Load time of a TF1 text-embedding module whose embedding is ~120 MB (made at run time from the committed
   ``tests/data/tf1/text_embedding`` fixture: its graph with a taller table, and a bundle written by
   ``hubkit.importers.tf1.writer``). The first load checks the CRC-32C of every tensor and records a verified
   stamp (in a fresh ``HUBKIT_CACHE_DIR``); later loads of the unchanged files skip the check. Both are shown,
   with the CRC's throughput on the shard.
2. Calls: that text module at batch 1 and 1024, the ``cnn_batch_norm`` fixture at batch 32.

TensorFlow is never imported by hubkit: when this interpreter has no TensorFlow, ``--tf-python`` names one that
has (with tensorflow_hub 0.15), and this script runs itself there as a worker printing TF's figures as JSON.
Without either, only hubkit's figures are printed. ``--threads N`` gives both engines N threads: this script runs
again with ``OPENBLAS_NUM_THREADS`` (and the like) set to N, and TensorFlow's session gets N intra-op threads and one
inter-op thread; without it each engine takes its defaults (every core). Figures are the min and median of N calls; ratios compare the
minimums of runs made in the same invocation. ``load_120MB`` is a load of the stamped (already verified) module.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "tf1")
SENTENCES = ["the cat sat on the mat", "hello world", "unknown words here", "a dog"]


def make_big_text_module(target: str, rows: int) -> str:
    """The text fixture with an embedding of ``rows`` x 5 float32 (ids beyond the vocabulary are never used)."""
    sys.path.insert(0, ROOT)
    from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
    from hubkit.importers.tf1.writer import write_bundle

    shutil.copytree(os.path.join(DATA, "text_embedding"), target)
    path = os.path.join(target, "saved_model.pb")
    with open(path, "rb") as f:
        sm = tfpb.SavedModel.FromString(f.read())
    for node in sm.meta_graphs[0].graph_def.node:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]  # recorded for the small table; TF infers them again
        if node.op == "VarHandleOp" and node.name == "embeddings":
            node.attr["shape"].shape.dim[0].size = rows
        elif node.op == "Const" and node.name.startswith("embeddings/Initializer/") and node.name.endswith("/shape"):
            tensor = node.attr["value"].tensor  # the initializer's shape: TF checks it against the variable
            del tensor.int_val[:]
            tensor.tensor_content = np.array([rows, 5], dtype="<i4").tobytes()
    with open(path, "wb") as f:
        f.write(sm.SerializeToString())
    shutil.rmtree(os.path.join(target, "variables"))
    table = np.random.default_rng(0).standard_normal((rows, 5)).astype(np.float32)
    write_bundle(os.path.join(target, "variables"), {"embeddings": table})
    return target


def _best(fn, repeats: int) -> list[float]:
    """``[min, median]`` seconds of ``repeats`` calls (the median shows how loaded the machine was)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return [min(times), float(np.median(times))]


def _inputs(batch: int):
    text = np.array([SENTENCES[i % len(SENTENCES)] for i in range(batch)], dtype=object)
    images = np.random.default_rng(1).standard_normal((32, 10, 10, 3)).astype(np.float32)
    return text, images


def hubkit_figures(big: str, repeats: int) -> dict[str, list[float]]:
    sys.path.insert(0, ROOT)
    import hubkit as hk
    from hubkit.importers.tf1.crc32c import crc32c

    hk.Module(os.path.join(DATA, "text_embedding"))  # imports and first-use costs out of the way
    start = time.perf_counter()
    hk.Module(big)  # checks every CRC, then stamps the bundle as verified
    first = time.perf_counter() - start
    shard = np.memmap(os.path.join(big, "variables", "variables.data-00000-of-00001"), dtype=np.uint8, mode="r")
    crc_time = _best(lambda: crc32c(shard), 3)[0]
    print(f"hubkit first load (every CRC checked): {first * 1e3:.1f} ms; CRC-32C {shard.size / crc_time / 1e9:.2f} GB/s "
          f"over the {shard.size / 1e6:.0f} MB shard")
    out = {"load_120MB": _best(lambda: hk.Module(big), repeats)}
    text = hk.Module(big)
    cnn = hk.Module(os.path.join(DATA, "cnn_batch_norm"))
    for batch in (1, 1024):
        sentences, _ = _inputs(batch)
        text(sentences)
        out[f"text_batch_{batch}"] = _best(lambda s=sentences: text(s), repeats * (20 if batch == 1 else 2))
    _, images = _inputs(32)
    cnn(images)
    out["cnn_batch_32"] = _best(lambda: cnn(images), repeats * 3)
    return out


def tf_figures(big: str, repeats: int, threads: int | None) -> dict[str, list[float]]:
    import types

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    stub = types.ModuleType("tensorflow.compat.v1.estimator")
    stub.Exporter = type("Exporter", (), {})  # type: ignore[attr-defined]
    sys.modules["tensorflow.compat.v1.estimator"] = stub
    import tensorflow_hub as hub

    tf1 = tf.compat.v1
    tf1.disable_v2_behavior()
    config = None
    if threads:
        config = tf1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)

    def load():
        with tf.Graph().as_default():
            m = hub.Module(big)
            with tf1.Session(config=config) as sess:
                sess.run([tf1.global_variables_initializer(), tf1.tables_initializer()])
                del m

    out = {"load_120MB": _best(load, repeats)}
    graph = tf.Graph()
    with graph.as_default():
        text = hub.Module(big)
        cnn = hub.Module(os.path.join(DATA, "cnn_batch_norm"))
        s_in = tf1.placeholder(tf.string, [None])
        i_in = tf1.placeholder(tf.float32, [None, 10, 10, 3])
        s_out, i_out = text(s_in), cnn(i_in)
        sess = tf1.Session(config=config)
        sess.run([tf1.global_variables_initializer(), tf1.tables_initializer()])
    for batch in (1, 1024):
        sentences, _ = _inputs(batch)
        sess.run(s_out, {s_in: sentences})
        out[f"text_batch_{batch}"] = _best(lambda s=sentences: sess.run(s_out, {s_in: s}),
                                           repeats * (20 if batch == 1 else 2))
    _, images = _inputs(32)
    sess.run(i_out, {i_in: images})
    out["cnn_batch_32"] = _best(lambda: sess.run(i_out, {i_in: images}), repeats * 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tf-python", help="a Python with tensorflow and tensorflow_hub, for TF's figures")
    parser.add_argument("--rows", type=int, default=6_000_000, help="embedding rows (x 5 float32; 6M = 120 MB)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="threads for each engine (default: their own)")
    parser.add_argument("--tf-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.tf_worker:
        print(json.dumps(tf_figures(args.tf_worker, args.repeats, args.threads)))
        return 0
    if args.threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        env = dict(os.environ)  # OpenBLAS reads its thread count once, when NumPy loads it: run again with it set
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(args.threads)
        return subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env).returncode
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from _timing import load_header

    print(load_header() + (f"; {args.threads} thread(s) each" if args.threads else "; each engine's default threads"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HUBKIT_CACHE_DIR"] = os.path.join(tmp, "cache")  # no verified stamp yet: the first load checks
        big = make_big_text_module(os.path.join(tmp, "big_text"), args.rows)
        size = os.path.getsize(os.path.join(big, "variables", "variables.data-00000-of-00001"))
        print(f"text module with a {size / 1e6:.0f} MB embedding ({args.rows} x 5 float32)")
        hk = hubkit_figures(big, args.repeats)
        tf = None
        try:
            import tensorflow  # noqa: F401

            tf = tf_figures(big, args.repeats, args.threads)
        except ImportError:
            if args.tf_python:
                worker = [args.tf_python, __file__, "--tf-worker", big, "--repeats", str(args.repeats)]
                worker += ["--threads", str(args.threads)] if args.threads else []
                result = subprocess.run(worker, capture_output=True, text=True)
                if result.returncode:
                    sys.exit(f"the TensorFlow worker failed:\n{result.stderr[-3000:]}")
                tf = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"{'case':16} {'hubkit min/median':>22} {'tensorflow min/median':>24} {'tf / hubkit (min)':>18}")
    for key, (low, mid) in hk.items():
        mine = f"{low * 1e3:8.3f} /{mid * 1e3:8.3f} ms"
        if tf is None:
            print(f"{key:16} {mine:>22} {'-':>24} {'-':>18}")
        else:
            theirs = f"{tf[key][0] * 1e3:8.3f} /{tf[key][1] * 1e3:8.3f} ms"
            print(f"{key:16} {mine:>22} {theirs:>24} {tf[key][0] / low:17.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
