"""Both example exporters end to end: export, publish to a registry served on 127.0.0.1, load by URL."""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading

import numpy as np
import pytest

import hubkit as hk
from hubkit.hub.registry import publish
from hubkit.hub.serve import make_server
from hubkit.module.image_util import get_expected_image_size, get_num_image_channels

SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "..", "scripts")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(SCRIPTS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """(registry root, base URL) of a static registry served on 127.0.0.1, with a private cache."""
    root = tmp_path / "registry"
    root.mkdir()
    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HUBKIT_PROGRESS", "0")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("HUBKIT_OFFLINE", raising=False)
    server = make_server(str(root), quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield str(root), f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


EMBEDDINGS = {"the": [0.1, 0.2, 0.3], "cat": [1.0, 0.0, 0.0], "sat": [0.0, 1.0, 0.0], "mat": [0.0, 0.0, 2.0]}


@pytest.fixture
def embedding_file(tmp_path):
    path = tmp_path / "vectors.txt"
    lines = [f"{len(EMBEDDINGS)} 3"] + [f"{w} " + " ".join(map(str, v)) for w, v in EMBEDDINGS.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # word2vec text format, with its header
    return str(path)


def expected_embedding(sentence: str, preprocess: bool) -> np.ndarray:
    if preprocess:
        sentence = "".join(ch for ch in sentence.lower() if ch.isalnum() or ch.isspace() or ch == "_")
    tokens = sentence.split()
    vectors = [np.array(EMBEDDINGS.get(t, [0.0, 0.0, 0.0])) for t in tokens]  # OOV rows start at zero
    return np.sum(vectors, axis=0) / np.sqrt(len(tokens)) if tokens else np.zeros(3)


@pytest.mark.parametrize("preprocess", [False, True])
def test_text_embedding_exporter_end_to_end(tmp_path, registry, embedding_file, preprocess, kernels):
    exporter = load_script("export_text_embedding")
    export_dir = str(tmp_path / "exported")
    args = ["--embedding-file", embedding_file, "--export-path", export_dir, "--num-oov-buckets", "3"]
    assert exporter.main(args + (["--preprocess"] if preprocess else [])) == 0
    root, url = registry
    publish(export_dir, root, name="acme/text-embedding", version=1)
    module = hk.Module(f"{url}/acme/text-embedding/1")
    sentences = ["the cat sat", "", "The CAT, sat!", "dog unicorn", "cat  mat\tthe", "日本 cat"]
    got = module(sentences)
    assert got.dtype == np.float32 and got.shape == (len(sentences), 3)
    want = np.stack([expected_embedding(s, preprocess) for s in sentences])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not got[1].any() and not got[3].any()  # empty and all-OOV sentences give zeros
    np.testing.assert_array_equal(got, hk.Module(export_dir)(sentences))

    tokens = module(["the cat", "", "zebra"], signature="tokens", as_dict=True)
    assert tokens["default"].tolist()[:2] == [0, 1] and tokens["row_ids"].tolist() == [0, 0, 2]
    assert 4 <= tokens["default"][2] < 7 and int(tokens["num_rows"]) == 3
    info = module.get_input_info_dict()
    assert list(info) == ["sentences"] and info["sentences"].dtype == hk.string


def test_text_exporter_reports_a_bad_file(tmp_path, capsys):
    exporter = load_script("export_text_embedding")
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2\nb 1\n")
    assert exporter.main(["--embedding-file", str(bad), "--export-path", str(tmp_path / "out")]) == 1
    assert "line for word 'b' has 1 values; expected 2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_image_exporter_end_to_end(tmp_path, registry, kernels):
    exporter = load_script("export_image_features")
    export_dir = str(tmp_path / "image")
    assert exporter.main(["--export-path", export_dir, "--image-size", "32"]) == 0
    root, url = registry
    publish(export_dir, root, name="acme/image-features", version=1)
    module = hk.Module(f"{url}/acme/image-features/1")
    assert get_expected_image_size(module) == [32, 32]
    assert get_expected_image_size(hk.load_module_spec(export_dir)) == [32, 32]
    assert get_num_image_channels(module) == 3
    images = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    got = module(images)
    assert got.shape == (3, exporter.BLOCKS[-1][0]) and got.dtype == np.float32

    # The same network written out in NumPy from the exporter's weights.
    x = images.astype(np.float64)
    for (w, b), (_, pool) in zip(exporter.init_weights(0), exporter.BLOCKS):
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        win = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # n, h, w, c, 3, 3
        x = np.maximum(np.einsum("nhwcij,ijco->nhwo", win, w) + b, 0.0)
        if pool:
            n, h, wd, c = x.shape
            x = x[:, : h // 2 * 2, : wd // 2 * 2].reshape(n, h // 2, 2, wd // 2, 2, c).max(axis=(2, 4))
    np.testing.assert_allclose(got, x.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)


def test_asset_follows_the_module_across_export_move_and_delete(tmp_path, kernels):
    vocab = tmp_path / "src" / "vocab.txt"
    vocab.parent.mkdir()
    vocab.write_text("hello\nworld\n")

    def module_fn():
        s = hk.placeholder(hk.string, [None], name="sentences")
        table = hk.text.vocabulary_table(hk.add_asset(str(vocab)), num_oov_buckets=1)
        ids = table.tokenize_and_lookup(s)
        hk.add_signature("default", {"sentences": s}, {"default": ids.values})

    first = tmp_path / "first"
    hk.Module(hk.create_module_spec(module_fn)).export(str(first))
    assert (first / "assets" / "vocab.txt").read_text() == "hello\nworld\n"
    vocab.write_text("changed\n")  # the exported copy is what counts from now on
    shutil.rmtree(vocab.parent)
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(first), str(moved))
    module = hk.Module(str(moved))
    assert module(["world hello x"]).tolist() == [1, 0, 2]
    again = tmp_path / "again"
    module.export(str(again))  # re-export from the loaded module copies its own asset
    shutil.rmtree(moved)
    assert hk.Module(str(again))(["hello"]).tolist() == [0]


def test_vocabulary_table_given_a_path_registers_an_asset(tmp_path):
    vocab = tmp_path / "v.txt"
    vocab.write_text("a\nb\n")

    def module_fn():
        s = hk.placeholder(hk.string, [None], name="tokens")
        ids = hk.text.vocabulary_table(str(vocab)).lookup(s)
        hk.add_signature("default", {"tokens": s}, {"default": ids})

    out = tmp_path / "m"
    hk.Module(hk.create_module_spec(module_fn)).export(str(out))
    vocab.unlink()
    assert hk.Module(str(out))(["b", "a", "z"]).tolist() == [1, 0, -1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello 1 2\nworld 3 x\n", r"line 2: value 'x' of word 'world' is not a number\."),
        (b"hello nan 1\n", r"line 1: value 'nan' of word 'hello' is not a finite float32"),
        (b"a 1 2\nhello 1 inf\n", r"line 2: value 'inf' of word 'hello' is not a finite float32"),
        (b"hello 1e400 2\n", r"line 1: value '1e400' of word 'hello' is not a finite float32"),
        (b"hello 4e38 2\n", r"line 1: value '4e38' of word 'hello' is not a finite float32"),  # float32 overflow
        (b"hello\tworld 1 2\nfoo 1 2\n", r"line 1: the word 'hello\\tworld' contains whitespace"),
        (b"hello 1 2\n\xc2\xa0x 1 2\n", r"line 2: the word '\\xa0x' contains whitespace"),
        (b"hello 1 2\nx\xc2\x85y 1 2\n", r"line 2: the word 'x\\x85y' contains whitespace"),  # U+0085
        (b"a 1 2\n 1 2\n", r"line 2 starts with a space, so its word is empty"),
        (b"ok 1 2\n\xff\xfe bad\n", r"line 2 is not UTF-8 text \(byte 0xff\)"),
        (b"a 1 2\n\nb 1 2 3\n", r"line 3: the line for word 'b' has 3 values; expected 2"),
        (b"a 1 2\nb 3 4\na 5 6\n", r"line 3 lists the word 'a' again \(first on line 1\)"),
        (b"3 2\na 1 2\nb 3 4\n", r"header promises 3 vectors of 2 values, but the file holds 2 of 2"),
        (b"2 2\n", r"holds no vectors"),
        (b"a\n", r"line 1 \(word 'a'\) has no values"),
    ],
)
def test_text_exporter_refuses_bad_files_with_one_line_and_no_traceback(tmp_path, capsys, content, message):
    exporter = load_script("export_text_embedding")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    with pytest.raises(hk.FormatError, match=message):
        exporter.read_embedding_file(str(bad))
    assert exporter.main(["--embedding-file", str(bad), "--export-path", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Embedding file") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_text_exporter_ignores_a_byte_order_mark_and_crlf(tmp_path):
    exporter = load_script("export_text_embedding")
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf2 2\r\nhello 1 2\r\nworld 3 4\r\n")
    words, vectors = exporter.read_embedding_file(str(path))
    assert words == ["hello", "world"] and vectors.tolist() == [[1, 2], [3, 4]] and vectors.dtype == np.float32
    exporter.export(str(path), str(tmp_path / "m"))
    assert (tmp_path / "m" / "assets" / "tokens.txt").read_bytes() == b"hello\nworld\n"
    np.testing.assert_allclose(hk.Module(str(tmp_path / "m"))(["hello"]), [[1.0, 2.0]])


def test_exporter_scripts_exit_with_one_error_line_when_run(tmp_path):
    """Run as programs: a missing file and an unwritable export path give status 1 and one stderr line."""
    import subprocess
    import sys

    cases = [
        ["export_text_embedding.py", "--embedding-file", str(tmp_path / "missing.txt"), "--export-path",
         str(tmp_path / "a")],
        ["export_image_features.py", "--export-path", str(tmp_path / "file.txt" / "sub"), "--image-size", "8"],
    ]
    (tmp_path / "file.txt").write_text("not a directory")
    for script, *args in cases:
        proc = subprocess.run(
            [sys.executable, os.path.join(SCRIPTS, script), *args], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_tokens_signature_gives_minus_one_for_unknown_words_without_buckets(tmp_path, kernels):
    exporter = load_script("export_text_embedding")
    exporter.export_words(["the", "cat"], np.array([[1.0, 0.0], [0.0, 2.0]], np.float32), str(tmp_path / "m"))
    module = hk.Module(str(tmp_path / "m"))
    tokens = module(["cat zebra the", "zebra"], signature="tokens", as_dict=True)
    assert tokens["default"].tolist() == [1, -1, 0, -1] and tokens["row_ids"].tolist() == [0, 0, 0, 1]
    np.testing.assert_allclose(module(["cat zebra the", "zebra"]), [[1 / np.sqrt(2), np.sqrt(2)], [0.0, 0.0]])
