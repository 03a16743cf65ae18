"""Export and load: round trips, determinism, atomicity, nested modules, assets, memory mapping."""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest
import safetensors.numpy

import hubkit as hk


def _tree(path) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_export_then_reload_gives_identical_outputs(mlp_spec, rng, tmp_path):
    m = hk.Module(mlp_spec)
    m.export(tmp_path / "mlp")
    assert sorted(os.listdir(tmp_path / "mlp")) == ["assets", "graph.pb", "hubkit_module.pb", "variables"]
    loaded = hk.Module(str(tmp_path / "mlp"))
    x = rng.normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), m(x))
    np.testing.assert_array_equal(
        loaded(x, signature="hidden", as_dict=True)["sum"], m(x, signature="hidden", as_dict=True)["sum"]
    )
    spec = hk.load_module_spec(tmp_path / "mlp")
    assert spec.get_signature_names() == ["default", "hidden"]
    assert spec.get_output_info_dict("hidden")["activations"].shape == (None, 5)
    assert spec.module_dir == str(tmp_path / "mlp")
    assert repr(loaded).startswith(f"<hubkit.Module 'module' from {str(tmp_path / 'mlp')!r}")


def test_double_export_is_byte_identical(fns, tmp_path):
    m = hk.Module(fns.bn_spec())
    m.export(tmp_path / "a")
    m.export(tmp_path / "b")
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a == b and "variables/variables.safetensors" in a
    hk.Module(str(tmp_path / "a")).export(tmp_path / "c")  # a reloaded module re-exports the same bytes
    assert _tree(tmp_path / "c") == a


def _modes(path) -> dict[str, int]:
    out = {".": os.stat(path).st_mode & 0o777}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, path)] = os.stat(p).st_mode & 0o777
    return out


@pytest.mark.parametrize(("umask", "dir_mode", "file_mode"), [(0o002, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_export_modes_are_fixed_and_never_wider_than_the_umask(tmp_path, umask, dir_mode, file_mode):
    (tmp_path / "vocab.txt").write_text("a\n")
    os.chmod(tmp_path / "vocab.txt", 0o777)

    def module_fn():
        x = hk.placeholder(hk.float32, [None, 2], name="x")
        hk.add_asset(tmp_path / "vocab.txt")
        hk.add_signature(inputs=x, outputs=hk.layers.dense(x, 1, name="dense"))

    m = hk.Module(hk.create_module_spec(module_fn))
    previous = os.umask(umask)
    try:
        m.export(tmp_path / "m")
    finally:
        os.umask(previous)
    modes = _modes(tmp_path / "m")
    assert "assets/vocab.txt" in modes and "variables/variables.safetensors" in modes
    for name, mode in modes.items():
        expected = dir_mode if os.path.isdir(tmp_path / "m" / name) else file_mode
        assert mode == expected, (name, oct(mode))


def test_export_never_changes_the_process_umask(mlp_spec, tmp_path, monkeypatch):
    # Changing the umask, even briefly, races with files other threads create meanwhile.
    def forbidden(mask):
        raise AssertionError(f"export called os.umask({mask:#o})")

    monkeypatch.setattr(os, "umask", forbidden)
    hk.Module(mlp_spec).export(tmp_path / "m")
    assert os.path.exists(tmp_path / "m" / "hubkit_module.pb")


def test_export_refuses_non_empty_target_and_leaves_no_temp(mlp_spec, tmp_path):
    m = hk.Module(mlp_spec)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(hk.FormatError, match="not an empty directory"):
        m.export(tmp_path / "taken")
    (tmp_path / "empty").mkdir()
    m.export(tmp_path / "empty")  # an empty directory is fine
    assert os.path.exists(tmp_path / "empty" / "hubkit_module.pb")
    assert sorted(os.listdir(tmp_path)) == ["empty", "taken"]


def test_export_failure_leaves_nothing(tmp_path):
    def module_fn():
        x = hk.placeholder(hk.float32, [None])
        hk.add_signature(inputs=x, outputs=x + hk.get_variable("w", [1], initializer=hk.initializers.ones()))

    m = hk.Module(hk.create_module_spec(module_fn))
    m.variable_map["w"]._value = np.array(["a"], dtype=object)  # a string value cannot be stored
    with pytest.raises(hk.FormatError, match="Variable 'w' holds strings"):
        m.export(tmp_path / "out")
    assert os.listdir(tmp_path) == []


def test_variables_are_safetensors_readable_by_the_reference_library(mlp_spec, tmp_path):
    m = hk.Module(mlp_spec)
    m.export(tmp_path / "mlp")
    stored = safetensors.numpy.load_file(str(tmp_path / "mlp" / "variables" / "variables.safetensors"))
    assert sorted(stored) == sorted(m.variable_map)
    for name, var in m.variable_map.items():
        np.testing.assert_array_equal(stored[name], var.numpy())


def test_sharded_variables(mlp_spec, rng, tmp_path):
    m = hk.Module(mlp_spec)
    m.export(tmp_path / "sharded", max_shard_bytes=64)
    files = sorted(os.listdir(tmp_path / "sharded" / "variables"))
    assert "variables.safetensors.index.json" in files and len(files) > 2
    x = rng.normal(size=(2, 4)).astype(np.float32)
    np.testing.assert_array_equal(hk.Module(str(tmp_path / "sharded"))(x), m(x))


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pytest.skip("needs /proc/self/statm to measure resident memory")


def test_loaded_variables_are_memory_mapped_copy_on_write(tmp_path):
    n = 64 * 1024 * 1024  # 256 MB of float32

    def module_fn():
        x = hk.placeholder(hk.float32, [None])
        w = hk.get_variable("big", [n], initializer=hk.initializers.zeros())
        hk.add_signature(inputs=x, outputs=x + w[0])

    m = hk.Module(hk.create_module_spec(module_fn))
    m.export(tmp_path / "big")
    del m
    path = tmp_path / "big" / "variables" / "variables.safetensors"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    rss_before = _rss_bytes()
    loaded = hk.Module(str(tmp_path / "big"))
    value = loaded.variable_map["big"].value
    assert isinstance(value, np.memmap)
    assert _rss_bytes() - rss_before < 32 * 1024**2  # far less than the 256 MB the variable holds
    assert loaded([1.0]).tolist() == [1.0]
    loaded.variable_map["big"].assign_add(np.ones(n, np.float32))  # copy on write: private memory only
    assert loaded([1.0]).tolist() == [2.0]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert hk.Module(str(tmp_path / "big"))([1.0]).tolist() == [1.0]


def test_two_modules_from_one_loaded_spec_do_not_share_values(mlp_spec, tmp_path):
    hk.Module(mlp_spec).export(tmp_path / "mlp")
    spec = hk.load_module_spec(str(tmp_path / "mlp"))
    a, b = hk.Module(spec), hk.Module(spec)
    before = b.variable_map["logits/bias"].numpy()
    a.variable_map["logits/bias"].assign_add(np.ones(3, np.float32))
    np.testing.assert_array_equal(b.variable_map["logits/bias"].numpy(), before)


def test_nested_module_export_is_self_contained(mlp_spec, rng, tmp_path):
    inner = hk.Module(mlp_spec)
    inner.variable_map["logits/bias"].assign([1.0, 2.0, 3.0])  # a value no initializer would give
    inner.export(tmp_path / "inner")
    loaded_inner = hk.Module(str(tmp_path / "inner"))

    def outer_fn():
        x = hk.placeholder(hk.float32, [None, 4], name="x")
        features = loaded_inner(x)
        hk.add_signature(inputs=x, outputs=hk.layers.dense(features, 2, name="head"))

    outer_spec = hk.create_module_spec(outer_fn)
    assert sorted(outer_spec.variables) == [
        "head/bias", "head/kernel", "module/hidden/bias", "module/hidden/kernel", "module/logits/bias",
        "module/logits/kernel",
    ]
    outer = hk.Module(outer_spec)
    np.testing.assert_array_equal(outer.variable_map["module/logits/bias"].numpy(), [1.0, 2.0, 3.0])
    outer.export(tmp_path / "outer")
    x = rng.normal(size=(4, 4)).astype(np.float32)
    expected = outer(x)
    shutil.rmtree(tmp_path / "inner")
    reloaded = hk.Module(str(tmp_path / "outer"))
    np.testing.assert_array_equal(reloaded(x), expected)


def _vocab_module_fn(paths):
    def module_fn():
        tensors = [hk.add_asset(p) for p in paths]
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_signature(inputs=x, outputs={"default": x, **{f"path{i}": t for i, t in enumerate(tensors)}})

    return module_fn


def test_assets_are_copied_renamed_and_followed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "vocab.txt").write_text("one\ntwo\n")
    (tmp_path / "b" / "vocab.txt").write_text("three\n")
    paths = [tmp_path / "a" / "vocab.txt", tmp_path / "b" / "vocab.txt", tmp_path / "a" / "vocab.txt"]
    spec = hk.create_module_spec(_vocab_module_fn(paths))
    m = hk.Module(spec)
    out = m([0.0], as_dict=True)
    assert out["path0"] == str(tmp_path / "a" / "vocab.txt")  # before export: the source file
    m.export(tmp_path / "mod")
    assert sorted(os.listdir(tmp_path / "mod" / "assets")) == ["vocab.txt", "vocab_1.txt"]
    shutil.rmtree(tmp_path / "a")
    shutil.rmtree(tmp_path / "b")
    shutil.move(tmp_path / "mod", tmp_path / "moved")
    out = hk.Module(str(tmp_path / "moved"))([0.0], as_dict=True)
    assets = os.path.realpath(tmp_path / "moved" / "assets")
    assert out["path0"] == os.path.join(assets, "vocab.txt") == out["path2"]
    assert out["path1"] == os.path.join(assets, "vocab_1.txt")
    with open(str(out["path1"])) as f:
        assert f.read() == "three\n"


def test_assets_travel_with_nested_modules(tmp_path):
    (tmp_path / "vocab.txt").write_text("x\n")
    hk.Module(hk.create_module_spec(_vocab_module_fn([tmp_path / "vocab.txt"]))).export(tmp_path / "inner")
    os.remove(tmp_path / "vocab.txt")
    inner = hk.Module(str(tmp_path / "inner"))

    def outer_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        out = inner(x, as_dict=True)
        assert len(hk.get_collection("asset_filepaths")) == 1
        hk.add_signature(inputs=x, outputs={"default": out["default"], "vocab": out["path0"]})

    hk.Module(hk.create_module_spec(outer_fn)).export(tmp_path / "outer")
    shutil.rmtree(tmp_path / "inner")
    path = hk.Module(str(tmp_path / "outer"))([1.0], as_dict=True)["vocab"]
    with open(str(path)) as f:
        assert f.read() == "x\n"


def test_add_asset_needs_an_existing_file(tmp_path):
    with pytest.raises(hk.GraphError, match="not an existing file"):
        hk.create_module_spec(_vocab_module_fn([tmp_path / "missing.txt"]))


def test_handles_that_are_not_directories_go_through_the_hub_resolver(mlp_spec, tmp_path, monkeypatch):
    import hubkit.hub

    hk.Module(mlp_spec).export(tmp_path / "mlp")
    seen = []

    def fake_resolve(handle):
        seen.append(handle)
        return str(tmp_path / "mlp")

    monkeypatch.setattr(hubkit.hub, "resolve", fake_resolve)
    m = hk.Module("https://models.example.org/acme/mlp/1")
    assert seen == ["https://models.example.org/acme/mlp/1"]
    assert m.spec.module_dir == str(tmp_path / "mlp")
