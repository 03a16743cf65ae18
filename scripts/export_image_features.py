"""Exports a small CNN image feature-vector module (the image-feature-vector common signature).

Usage::

    python scripts/export_image_features.py --export-path /tmp/image_features [--image-size 64] [--seed 0]

Signature ``default``: ``images`` float32 ``[None, H, W, 3]`` with values in [0, 1] -> ``default``
float32 ``[None, 128]`` features (three conv3x3+ReLU+max-pool blocks, a fourth conv block, then
the spatial average). The weights are He-initialised from ``--seed``: the example shows the
format and the signature, it is not a trained model. The expected image size is attached as an
``ImageModuleInfo`` message, so ``hubkit.get_expected_image_size(module)`` returns ``[H, W]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import hubkit as hk
from hubkit.module.image_util import attach_image_module_info

_SCRIPTS = str(Path(__file__).resolve().parent)
if _SCRIPTS not in sys.path:  # scripts/ helpers, also when this file is loaded by path
    sys.path.insert(0, _SCRIPTS)
from _cli_errors import run_cli  # noqa: E402

# (output channels, max-pool after) per conv block; the feature size is the last block's channels.
BLOCKS = ((32, True), (64, True), (96, True), (128, False))


def init_weights(seed: int, in_channels: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-initialised (filters HWIO, biases) of every conv block."""
    rng = np.random.default_rng(seed)
    weights = []
    c = in_channels
    for out, _ in BLOCKS:
        w = rng.normal(scale=np.sqrt(2.0 / (9 * c)), size=(3, 3, c, out)).astype(np.float32)
        weights.append((w, np.zeros(out, np.float32)))
        c = out
    return weights


def features(images: hk.Tensor, weights: list[tuple[np.ndarray, np.ndarray]]) -> hk.Tensor:
    """The feature extractor on ``images`` with the given block weights (Variables in a module)."""
    x = images
    for i, ((w, b), (_, pool)) in enumerate(zip(weights, BLOCKS)):
        with hk.name_scope(f"block{i + 1}"):
            kernel = hk.Variable(w, name=f"block{i + 1}/kernel")
            bias = hk.Variable(b, name=f"block{i + 1}/bias")
            x = hk.nn.relu(hk.nn.bias_add(hk.nn.conv2d(x, kernel, strides=1, padding="SAME"), bias))
            if pool:
                x = hk.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")
    return hk.reduce_mean(x, axis=[1, 2])


def make_module_spec(image_size: int, seed: int) -> hk.ModuleSpec:
    """The spec of the image feature-vector module for ``image_size`` x ``image_size`` RGB images."""
    weights = init_weights(seed)

    def module_fn() -> None:
        images = hk.placeholder(hk.float32, [None, image_size, image_size, 3], name="images")
        hk.add_signature("default", {"images": images}, {"default": features(images, weights)})
        attach_image_module_info(image_size, image_size, num_channels=3)

    return hk.create_module_spec(module_fn)


def export(export_path: str, image_size: int = 64, seed: int = 0) -> None:
    """Exports the module to ``export_path``."""
    hk.Module(make_module_spec(image_size, seed)).export(export_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-path", required=True, help="directory to create (must not exist or be empty)")
    parser.add_argument("--image-size", type=int, default=64, help="expected height and width (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    if args.image_size < 8:
        parser.error("--image-size must be at least 8 (three 2x2 poolings)")
    return run_cli(lambda: export(args.export_path, args.image_size, args.seed), f"exported {args.export_path}")


if __name__ == "__main__":
    sys.exit(main())
