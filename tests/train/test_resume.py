"""Training resumes exactly: N epochs, checkpoint, a new process restores and trains M more epochs,
and the weights equal N+M uninterrupted epochs bit for bit (same shuffling, same Adam state)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import hubkit as hk

    mode, directory, epochs, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    x = hk.Input((20,))
    init = hk.initializers.glorot_uniform(seed=7)
    h = hk.layers.Dense(16, activation="relu", kernel_initializer=init)(x)
    h = hk.layers.BatchNormalization()(h)
    model = hk.Model(x, hk.layers.Dense(3, kernel_initializer=init)(h))
    model.compile(hk.train.Adam(0.01), "sparse_softmax_cross_entropy", metrics=["accuracy"])
    manager = hk.CheckpointManager(hk.Checkpoint(model=model), directory, max_to_keep=2)
    if mode == "resume":
        status = hk.Checkpoint(model=model).restore(manager.latest_checkpoint)
        status.assert_existing_objects_matched()
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(200, 20)).astype(np.float32)
    ys = (xs[:, 0] + xs[:, 1] > 0).astype(np.int64) + (xs[:, 2] > 1)
    history = model.fit(xs, ys, batch_size=32, epochs=epochs, verbose=0)
    if mode == "resume":
        status.assert_consumed()  # the optimizer slots were restored when fit created them
    manager.save()
    np.savez(out, *[v.value for v in model.variables], loss=np.array(history["loss"]))
    """
)


def run(tmp_path: Path, mode: str, directory: str, epochs: int, out: str) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    subprocess.run([sys.executable, str(script), mode, directory, str(epochs), out], check=True, timeout=300)


def test_resume_in_a_new_process_is_bit_exact(tmp_path):
    run(tmp_path, "fresh", str(tmp_path / "a"), 2, str(tmp_path / "first.npz"))
    run(tmp_path, "resume", str(tmp_path / "a"), 3, str(tmp_path / "resumed.npz"))
    run(tmp_path, "fresh", str(tmp_path / "b"), 5, str(tmp_path / "straight.npz"))
    resumed, straight = np.load(tmp_path / "resumed.npz"), np.load(tmp_path / "straight.npz")
    first = np.load(tmp_path / "first.npz")
    weights = [k for k in straight.files if k != "loss"]
    assert len(weights) == 8  # two Dense layers and a BatchNormalization's four variables
    for k in weights:
        np.testing.assert_array_equal(resumed[k], straight[k])
    assert not np.array_equal(first["arr_0"], straight["arr_0"])  # the last epochs did change the weights
    np.testing.assert_array_equal(np.concatenate([first["loss"], resumed["loss"]]), straight["loss"])
