"""Build the sdist and wheel, install the wheel into a fresh virtualenv outside the source tree, smoke-test it.

    python scripts/check_wheel.py              # what `make test` runs after the suite
    python scripts/check_wheel.py --keep       # leave the temp directory (dist/, venv/) for inspection

The wheel is built from the sdist (`python -m build`), so both are exercised. The virtualenv is new each
time and installs only the wheel and its declared dependencies (pip's cache makes that quick), so a file
missing from the package data, an undeclared dependency or a broken entry point fails here, not for users.
The smoke test (`--smoke`, run inside that virtualenv from a directory outside the source tree) imports
hubkit, runs the `hubkit` command, exports, loads, publishes and resolves a module, and checks the package
data (.proto schemas, the catalog template).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "hubkit-ml"


def run(command: list[str], **kwargs) -> None:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"check_wheel: {' '.join(command[:4])} ... failed with status {result.returncode}")


def build_and_check(keep: bool) -> None:
    started = time.perf_counter()
    temp = Path(tempfile.mkdtemp(prefix="hubkit-wheel-"))
    try:
        dist = temp / "dist"
        run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=temp)
        wheels = glob.glob(str(dist / "hubkit_ml-*.whl"))
        sdists = glob.glob(str(dist / "hubkit_ml-*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            raise SystemExit(f"check_wheel: expected one wheel and one sdist in {dist}, found {os.listdir(dist)}")
        venv = temp / "venv"
        # Without pip of its own (ensurepip costs ~10 s): this interpreter's pip installs into it (--python).
        run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        python = str(venv / "bin" / "python")
        run([sys.executable, "-m", "pip", "--python", python, "install", "--disable-pip-version-check", "-q",
             wheels[0]], cwd=temp)
        work = temp / "work"
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["HUBKIT_CACHE_DIR"] = str(temp / "cache")
        run([python, str(Path(__file__).resolve()), "--smoke"], cwd=work, env=env)
        print(f"wheel check passed: {Path(wheels[0]).name} and {Path(sdists[0]).name} built, installed into a "
              f"fresh virtualenv and smoke-tested in {time.perf_counter() - started:.0f} s")
    finally:
        if keep:
            print(f"kept {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)


def smoke() -> None:
    """Runs inside the fresh virtualenv, from a directory outside the source tree."""
    import importlib.metadata
    import importlib.resources
    import json

    import numpy as np

    import hubkit as hk

    where = Path(hk.__file__).resolve()
    if ROOT in where.parents:
        raise SystemExit(f"smoke: imported hubkit from the source tree ({where}), not from the wheel")
    if importlib.metadata.version(DISTRIBUTION) != hk.__version__:
        raise SystemExit(f"smoke: {DISTRIBUTION} {importlib.metadata.version(DISTRIBUTION)} != {hk.__version__}")
    for extra in ("numba", "onnx", "dask", "onnxruntime"):
        if extra in sys.modules:
            raise SystemExit(f"smoke: import hubkit imported the optional {extra!r}")
    package = importlib.resources.files("hubkit")
    for data in ("format/hubkit_module.proto", "module/image_module_info.proto", "hub/catalog.html", "py.typed"):
        if not package.joinpath(data).is_file():
            raise SystemExit(f"smoke: package data {data!r} is missing from the wheel")

    def module_fn() -> None:
        x = hk.placeholder(hk.float32, [None, 3], name="x")
        hk.add_signature(inputs=x, outputs=hk.layers.dense(x, 2, name="dense"))

    m = hk.Module(hk.create_module_spec(module_fn))
    m.export("module")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(hk.Module("module")(x), m(x), rtol=1e-6)
    manifest = hk.publish("module", "registry", name="acme/smoke", description="smoke test")
    np.testing.assert_allclose(hk.Module(os.path.abspath("registry/acme/smoke/1.tar.gz"))(x), m(x), rtol=1e-6)
    if "smoke test" not in Path("registry/index.html").read_text(encoding="utf-8"):
        raise SystemExit("smoke: the catalog page lacks the module's description")

    def cli(*args: str) -> str:
        result = subprocess.run(["hubkit", *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise SystemExit(f"smoke: hubkit {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    if cli("--version").split()[:2] != ["hubkit", hk.__version__]:
        raise SystemExit("smoke: hubkit --version does not print the version")
    if "signature 'default'" not in cli("info", "module"):
        raise SystemExit("smoke: hubkit info does not list the signature")
    if "is consistent" not in cli("registry", "check", "registry"):
        raise SystemExit("smoke: hubkit registry check failed")
    with open("registry/acme/smoke/1.json", encoding="utf-8") as f:
        if json.load(f)["sha256"] != manifest["sha256"]:
            raise SystemExit("smoke: the manifest on disk differs from the one publish returned")
    print(f"smoke test passed: hubkit {hk.__version__} from {where.parent}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="run the smoke test in this interpreter")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()
    if args.smoke:
        smoke()
    else:
        build_and_check(args.keep)


if __name__ == "__main__":
    main()
