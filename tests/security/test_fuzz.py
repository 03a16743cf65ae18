"""Fuzzing the archive extractor and the module loader with mutated real archives and modules.

A few hundred cases run in ``make test``; the nightly mode runs 10,000 of each
(``pytest -m slow tests/security/test_fuzz.py``, or ``HUBKIT_FUZZ_CASES=10000``). Every case must end in
success or a ``HubkitError``: no other exception, no hang (every input is bounded and the extraction
limits are small), and the process's memory stays bounded. The seed of a failing case is in the message.
"""

from __future__ import annotations

import io
import os
import random
import resource
import shutil
import tarfile

import numpy as np
import pytest

import hubkit as hk
from hubkit.errors import HubkitError
from hubkit.hub.extract import safe_extract
from hubkit.hub.registry import pack_module

QUICK_CASES = int(os.environ.get("HUBKIT_FUZZ_CASES", "300"))
NIGHTLY_CASES = 10_000
MAX_GROWTH_MB = 300


def _export_module(path: str) -> str:
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 4])
        w = hk.get_variable("dense/w", [4, 3], initializer=hk.initializers.get("glorot_uniform"))
        b = hk.get_variable("dense/b", [3], initializer=hk.initializers.get("zeros"))
        hk.add_signature(inputs=x, outputs=hk.matmul(x, w) + b)
        s = hk.placeholder(hk.string, [None])
        hk.add_signature("clean", inputs=s, outputs=hk.text.regex_replace(hk.text.lower(s), r"[^\w\s]+", ""))

    hk.Module(hk.create_module_spec(module_fn)).export(path)
    return path


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-seeds")
    module = _export_module(str(root / "module"))
    packed = io.BytesIO()
    pack_module(module, packed)
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(module, arcname=".")
    return module, [packed.getvalue(), plain.getvalue()]


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3, 8])):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:  # flip bits
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # set an interesting byte
            buf[min(pos, len(buf) - 1)] = rng.choice([0, 0xFF, 0x7F, 0x80, ord("0"), ord("["), ord("/"), ord(".")])
        elif op == 2:  # truncate
            del buf[pos:]
        elif op == 3:  # delete a run
            del buf[pos:pos + rng.randrange(1, 600)]
        elif op == 4:  # insert random bytes
            buf[pos:pos] = rng.randbytes(rng.randrange(1, 64))
        elif op == 5 and len(buf) > 8:  # duplicate a chunk elsewhere
            start = rng.randrange(len(buf) - 4)
            buf[pos:pos] = buf[start:start + rng.randrange(4, 1024)]
        else:  # overwrite a 4- or 8-byte number with an extreme one
            value = rng.choice([0, 1, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1])
            width = rng.choice([4, 8])
            buf[pos:pos + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    return bytes(buf)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fuzz_extractor(seeds, tmp_path, cases: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    archive = tmp_path / "fuzz.tar.gz"
    outcomes = {"ok": 0, "refused": 0}
    start_rss = _peak_rss_mb()
    for case in range(cases):
        archive.write_bytes(_mutate(rng.choice(seeds), rng))
        dest = tmp_path / f"out{case % 2}"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        try:
            # Odd cases as a sha256-pinned download reads them (plain members inflated raw, no CRC).
            safe_extract(str(archive), str(dest), max_bytes=32 << 20, max_members=1000, check_crc=case % 2 == 0)
            outcomes["ok"] += 1
        except HubkitError:
            outcomes["refused"] += 1
        except BaseException as exc:
            raise AssertionError(f"case {case} of seed {seed}: {type(exc).__name__}: {exc}") from exc
    assert _peak_rss_mb() - start_rss < MAX_GROWTH_MB
    return outcomes


_TARGETS = ["graph.pb", "hubkit_module.pb", "variables/variables.safetensors"]


def _fuzz_loader(module: str, tmp_path, cases: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    work = tmp_path / "module"
    shutil.copytree(module, work)
    originals = {t: (work / t).read_bytes() for t in _TARGETS}
    outcomes = {"ok": 0, "refused": 0}
    start_rss = _peak_rss_mb()
    for case in range(cases):
        target = rng.choice(_TARGETS)
        (work / target).write_bytes(_mutate(originals[target], rng))
        try:
            spec = hk.load_module_spec(str(work))
            m = hk.Module(spec)
            m(np.ones((2, 4), np.float32))
            outcomes["ok"] += 1
        except HubkitError:
            outcomes["refused"] += 1
        except BaseException as exc:
            raise AssertionError(f"case {case} of seed {seed} ({target}): {type(exc).__name__}: {exc}") from exc
        finally:
            (work / target).write_bytes(originals[target])
    assert _peak_rss_mb() - start_rss < MAX_GROWTH_MB
    return outcomes


def test_fuzz_archive_extractor(seeds, tmp_path):
    outcomes = _fuzz_extractor(seeds[1], tmp_path, QUICK_CASES, seed=1)
    assert outcomes["refused"] > 0


def test_fuzz_module_loader(seeds, tmp_path):
    outcomes = _fuzz_loader(seeds[0], tmp_path, QUICK_CASES, seed=2)
    assert outcomes["refused"] > 0


def _nightly(request) -> None:
    if "slow" not in (request.config.getoption("-m") or "") and "HUBKIT_FUZZ_NIGHTLY" not in os.environ:
        pytest.skip("nightly fuzzing: run with -m slow (or HUBKIT_FUZZ_NIGHTLY=1)")


@pytest.mark.slow
def test_fuzz_archive_extractor_nightly(seeds, tmp_path, request):
    _nightly(request)
    _fuzz_extractor(seeds[1], tmp_path, NIGHTLY_CASES, seed=int(os.environ.get("HUBKIT_FUZZ_SEED", "11")))


@pytest.mark.slow
def test_fuzz_module_loader_nightly(seeds, tmp_path, request):
    _nightly(request)
    _fuzz_loader(seeds[0], tmp_path, NIGHTLY_CASES, seed=int(os.environ.get("HUBKIT_FUZZ_SEED", "12")))


def _random_attr(value, rng: random.Random) -> None:
    """Overwrites a graph.pb AttrValue with a random, often extreme, value of a random kind."""
    kind = rng.randrange(7)
    if kind == 0:
        value.i = rng.choice([0, -1, 1, 2**31, 2**62, -(2**63), 2**63 - 1])
    elif kind == 1:
        value.f = rng.choice([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e308, -1e-308])
    elif kind == 2:
        value.s = rng.choice(["", "x" * 1000, "\x00", "../../etc/passwd", "(a)\\1", "SAME", "VALID", "NHWC"])
    elif kind == 3:
        value.b = rng.random() < 0.5
    elif kind == 4:
        value.dtype = rng.choice(["float32", "int64", "string", "complex128", "", "object"])
    else:
        target = value.list if kind == 5 else value.tuple
        del target.items[:]
        for _ in range(rng.choice([0, 1, 2, 4, 70])):
            item = target.items.add()
            item.i = rng.choice([0, -1, 1, 3, 2**40, -(2**63)])


def _fuzz_attributes(module: str, tmp_path, cases: int, seed: int) -> None:
    from hubkit.format import hubkit_module_pb2 as pb

    rng = random.Random(seed)
    work = tmp_path / "module-attrs"
    shutil.copytree(module, work)
    original = (work / "graph.pb").read_bytes()
    for case in range(cases):
        graph = pb.ModuleGraph.FromString(original)
        entries = [e for v in graph.variants for n in v.nodes for e in n.attrs.entries]
        for entry in rng.sample(entries, min(len(entries), rng.choice([1, 1, 2]))):
            _random_attr(entry.value, rng)
        (work / "graph.pb").write_bytes(graph.SerializeToString())
        try:
            m = hk.Module(str(work))
            m(np.ones((2, 4), np.float32))
            m(np.array(["Hello, World!"], dtype=object), signature="clean")
        except HubkitError:
            pass
        except BaseException as exc:
            raise AssertionError(f"case {case} of seed {seed}: {type(exc).__name__}: {exc}") from exc


def test_fuzz_module_attributes(seeds, tmp_path):
    _fuzz_attributes(seeds[0], tmp_path, QUICK_CASES, seed=3)


@pytest.mark.slow
def test_fuzz_module_attributes_nightly(seeds, tmp_path, request):
    _nightly(request)
    _fuzz_attributes(seeds[0], tmp_path, NIGHTLY_CASES, seed=int(os.environ.get("HUBKIT_FUZZ_SEED", "13")))
