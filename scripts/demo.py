"""`make demo`: every capability of hubkit once, on data it makes itself, served on 127.0.0.1.

1. engine: a small MLP graph trained for a few steps with Adam; the loss goes down;
2. modules: a module with two signatures, exported, reloaded, both signatures called;
3. training: a functional Model trained, checkpointed, exported as a module;
4. text and images: a text-embedding and an image-feature module built by the example exporters;
5. hub: all of them published to a registry under .demo/, served on 127.0.0.1, loaded by URL
   (the second load comes from the cache) and run; sentences beside their embeddings and a similarity table.

Every random number is seeded: two runs print the same numbers (only the server's port differs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("HUBKIT_DEMO_DIR", ROOT / ".demo")).resolve()  # the tests point it elsewhere
os.environ.setdefault("HUBKIT_CACHE_DIR", str(DEMO / "cache"))
os.environ.setdefault("HUBKIT_PROGRESS", "0")  # the archives are tiny: no progress bars in the transcript
SEED = 0

import hubkit as hk  # noqa: E402  (after HUBKIT_CACHE_DIR is set)
from hubkit.hub.serve import make_server  # noqa: E402


def init(seed: int):
    """A seeded initializer: hk.set_random_seed seeds random ops, not variable initializers."""
    return hk.initializers.glorot_uniform(seed=SEED + seed)


def fmt(values: np.ndarray) -> str:
    return np.array2string(np.asarray(values), precision=4, floatmode="fixed", suppress_small=True, separator=", ")


def banner(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def engine_demo() -> None:
    banner("1. engine: train an MLP on generated data")
    rng = np.random.default_rng(0)
    x_data = rng.normal(size=(512, 8)).astype(np.float32)
    true_w = rng.normal(size=(8, 1)).astype(np.float32)
    y_data = np.tanh(x_data @ true_w) + 0.05 * rng.normal(size=(512, 1)).astype(np.float32)
    g = hk.Graph()
    with g.as_default():
        hk.set_random_seed(SEED)  # the initial weights: the same losses every run
        x = hk.placeholder(hk.float32, [None, 8], name="x")
        y = hk.placeholder(hk.float32, [None, 1], name="y")
        h = hk.layers.dense(x, 32, activation="relu", kernel_initializer=init(1))
        pred = hk.layers.dense(h, 1, kernel_initializer=init(2))
        loss = hk.losses.mean_squared_error(y, pred)
        train_op = hk.train.Adam(0.01).minimize(loss)
    sess = hk.Session(g)
    for step in range(101):
        batch = rng.integers(0, 512, 64)
        _, value = sess.run([train_op, loss], {x: x_data[batch], y: y_data[batch]})
        if step % 20 == 0:
            print(f"step {step:3d}  loss {value:.4f}")


def two_signature_module_fn() -> None:
    hk.set_random_seed(SEED)
    x = hk.placeholder(hk.float32, [None, 3], name="x")
    h = hk.layers.dense(x, 4, activation="relu", name="hidden", kernel_initializer=init(3))
    hk.add_signature(inputs=x, outputs=hk.layers.dense(h, 2, name="logits", kernel_initializer=init(4)))
    words = hk.placeholder(hk.float32, [None, 3], name="features")
    hk.add_signature("norm", inputs={"features": words}, outputs={"l2": hk.sqrt(hk.reduce_sum(hk.square(words), axis=1))})


def module_demo() -> Path:
    banner("2. modules: two signatures, export, reload")
    spec = hk.create_module_spec(two_signature_module_fn)
    m = hk.Module(spec)
    path = DEMO / "modules" / "two-signatures"
    m.export(str(path))
    loaded = hk.Module(str(path))
    print(loaded)
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], np.float32)
    print("default :", fmt(loaded(x)))
    print("norm    :", fmt(loaded({"features": x}, signature="norm", as_dict=True)["l2"]))
    np.testing.assert_allclose(loaded(x), m(x), rtol=1e-6)
    return path


def training_demo() -> Path:
    banner("3. training: a functional model, a checkpoint, a module")
    rng = np.random.default_rng(1)
    x_data = rng.normal(size=(600, 10)).astype(np.float32)
    labels = (x_data[:, :3].sum(axis=1) > 0).astype(np.int64)
    hk.set_random_seed(SEED)
    inputs = hk.Input(shape=(10,), name="features")
    hidden = hk.layers.Dense(16, activation="relu", name="hidden", kernel_initializer=init(5))(inputs)
    outputs = hk.layers.Dense(2, name="logits", kernel_initializer=init(6))(hidden)
    model = hk.Model(inputs, outputs, name="classifier")
    model.summary()
    model.compile(optimizer=hk.train.Adam(0.01), loss="sparse_softmax_cross_entropy", metrics=["accuracy"])
    history = model.fit(x_data, labels, batch_size=32, epochs=3, verbose=0, seed=SEED)
    for epoch, (loss, accuracy) in enumerate(zip(history.history["loss"], history.history["accuracy"]), 1):
        print(f"epoch {epoch}  loss {loss:.4f}  accuracy {accuracy:.4f}")
    ckpt_dir = DEMO / "checkpoints"
    manager = hk.CheckpointManager(hk.Checkpoint(model=model), str(ckpt_dir), max_to_keep=2)
    print("checkpoint:", os.path.relpath(manager.save(), ROOT))
    path = DEMO / "modules" / "classifier"
    hk.export_model_as_module(model, path)  # the trained weights, under the model's own variable names
    print("exported", os.path.relpath(path, ROOT), "with variables", sorted(hk.Module(str(path)).variable_map))
    return path


def example_exporters_demo() -> dict[str, Path]:
    banner("4. text and image modules from the example exporters")
    rng = np.random.default_rng(2)
    words = ["the", "cat", "sat", "on", "mat", "dog", "ran", "a", "hubkit", "module"]
    emb_file = DEMO / "embeddings.txt"
    with open(emb_file, "w", encoding="utf-8") as f:
        for w in words:
            f.write(w + " " + " ".join(f"{v:.4f}" for v in rng.normal(size=16)) + "\n")
    text_dir = DEMO / "modules" / "text-embedding"
    image_dir = DEMO / "modules" / "image-features"
    run = partial(subprocess.run, check=True, cwd=ROOT)
    run([sys.executable, "scripts/export_text_embedding.py", "--embedding-file", str(emb_file),
         "--export-path", str(text_dir), "--num-oov-buckets", "2", "--preprocess"])
    run([sys.executable, "scripts/export_image_features.py", "--export-path", str(image_dir), "--image-size", "32"])
    return {"text-embedding": text_dir, "image-features": image_dir}


def serve(root: Path) -> tuple[ThreadingHTTPServer, str]:
    server = make_server(str(root), quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def similarity_table(sentences: list[str], vectors: np.ndarray) -> None:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    similarity = unit @ unit.T
    width = max(len(s) for s in sentences) + 2
    print("  cosine similarity".ljust(width + 6) + "".join(f"{f'[{i}]':>7}" for i in range(len(sentences))))
    for i, sentence in enumerate(sentences):
        cells = "".join(f"{similarity[i, j]:7.3f}" for j in range(len(sentences)))
        print(f"  [{i}] {sentence!r:<{width}}{cells}")


def hub_demo(modules: dict[str, Path]) -> None:
    banner("5. hub: publish, serve on 127.0.0.1, load by URL")
    registry = DEMO / "registry"
    for name, path in modules.items():
        hk.publish(str(path), str(registry), name=f"demo/{name}", description=f"hubkit demo: {name}")
    server, base = serve(registry)
    try:
        print(f"registry served at {base} (catalog: {base}/index.html)")
        rng = np.random.default_rng(3)
        inputs = {
            "two-signatures": np.array([[1.0, 2.0, 3.0]], np.float32),
            "classifier": rng.normal(size=(2, 10)).astype(np.float32),
            "text-embedding": ["the cat sat on the mat", "a cat sat on a mat", "the dog ran", "a hubkit module", ""],
            "image-features": rng.uniform(size=(2, 32, 32, 3)).astype(np.float32),
        }
        for name in modules:
            url = f"{base}/demo/{name}/1"
            m = hk.Module(url)
            hk.Module(url)  # the second load is a cache hit: no network request
            print(f"demo/{name}/1: downloaded, verified and cached; loaded again from the cache")
            out = m(inputs[name])
            np.testing.assert_allclose(out, hk.Module(str(modules[name]))(inputs[name]), rtol=1e-6, atol=1e-6)
            if name == "text-embedding":
                for sentence, vector in zip(inputs[name], out):
                    print(f"  {sentence!r:<26} -> {fmt(vector[:4])[:-1]}, ...] (|v| = {np.linalg.norm(vector):.3f})")
                similarity_table(inputs[name], out)
            else:
                print(f"  -> output shape {tuple(out.shape)}, first row starts {fmt(out[0][:4])} (same as the local copy)")
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir()
    engine_demo()
    modules = {"two-signatures": module_demo(), "classifier": training_demo()}
    modules.update(example_exporters_demo())
    hub_demo(modules)
    onnx_demo()
    print("\ndemo finished: everything ran on this machine and 127.0.0.1.")
    where = os.path.relpath(DEMO, Path.cwd())
    print(f"Browse the registry it built:  .venv/bin/hubkit registry serve {where}/registry"
          "  (then open http://127.0.0.1:8000/)")
    print(f"Inspect a module:              .venv/bin/hubkit info {where}/modules/text-embedding")


def onnx_demo() -> None:
    """ONNX round trip: the classifier module -> ONNX -> onnxruntime, and the ONNX file -> hubkit again."""
    banner("6. ONNX round trip")
    classifier = DEMO / "modules" / "classifier"
    path = hk.export_onnx(str(classifier), str(DEMO / "classifier.onnx"))
    print("exported", path)
    x = np.random.default_rng(5).normal(size=(3, 10)).astype(np.float32)
    ours = hk.Module(str(classifier))(x)
    back = hk.Module(path)  # the .onnx file imported as a module (its inputs and outputs keep their names)
    (imported,) = back(x, as_dict=True).values()  # one output, named as in the ONNX graph
    print(f"  hubkit: {fmt(ours[0])}\n  ONNX imported back into hubkit: {fmt(imported[0])}")
    try:
        import onnxruntime as ort
    except ImportError:
        print("  (onnxruntime is not installed: pip install onnxruntime to run the model there too)")
        return
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {session.get_inputs()[0].name: x})  # the signature's input key
    print(f"  onnxruntime: {fmt(theirs[0])}  (max difference {np.abs(theirs - ours).max():.1e})")


if __name__ == "__main__":
    main()
