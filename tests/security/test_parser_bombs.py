"""Class 4: memory and recursion bombs in gzip headers, tar headers and JSON documents.

Every parser of untrusted bytes has bounded memory and depth and fails with a HubkitError.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import tracemalloc
import zlib

import pytest

from hubkit.errors import DownloadError, FormatError, HubkitError
from hubkit.hub.extract import UnsafeArchiveError, safe_extract
from tests.security.hostile import entry, gz, manifest_for, tar_bytes


def _gzip_with_header_field(flag: int, field: bytes, payload: bytes) -> bytes:
    header = b"\x1f\x8b\x08" + bytes([flag]) + b"\0\0\0\0\0\xff" + field + b"\0"
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return header + compressor.compress(payload) + compressor.flush() + struct.pack("<II", zlib.crc32(payload), len(payload))


@pytest.mark.parametrize("flag", [0x08, 0x10, 0x18])  # FNAME, FCOMMENT, both (the same field twice)
@pytest.mark.parametrize("size", [1 << 20, 8 << 20])
def test_huge_gzip_name_and_comment_fields_cost_no_memory(tmp_path, flag, size):
    field = b"n" * size
    if flag == 0x18:
        field = field + b"\0" + b"c" * size
    raw = _gzip_with_header_field(flag, field, tar_bytes([entry("graph.pb", b"ok")]))
    path = tmp_path / "a.tar.gz"
    path.write_bytes(raw)
    del raw, field
    dest = tmp_path / "out"
    dest.mkdir()
    tracemalloc.start()
    try:
        files = safe_extract(str(path), str(dest), 1 << 30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sorted(f.path for f in files) == ["graph.pb", "hubkit_module.pb"]
    assert peak < 12 << 20  # a few read buffers, not a list of the header's bytes


def _chained_headers(kind: bytes, count: int) -> bytes:
    """``count`` extended headers (PAX 'x' or GNU long name 'L') in a row, then one regular file."""
    out = io.BytesIO()
    for i in range(count):
        data = (b"%d path=p%05d\n" % (len(f"xx path=p{i:05d}\n"), i)) if kind == tarfile.XHDTYPE else b"n" * 100 + b"\0"
        info = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "././@PaxHeader")
        info.type = kind
        info.size = len(data)
        out.write(info.tobuf(tarfile.USTAR_FORMAT if kind == tarfile.XHDTYPE else tarfile.GNU_FORMAT))
        out.write(data + b"\0" * (-len(data) % 512))
    info = tarfile.TarInfo("graph.pb")
    info.size = 2
    out.write(info.tobuf(tarfile.USTAR_FORMAT) + b"ok" + b"\0" * 510 + b"\0" * 1024)
    return out.getvalue()


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
@pytest.mark.parametrize("count", [40, 2000, 20_000])
@pytest.mark.parametrize("compress", [True, False])
def test_chained_extended_headers_are_refused_without_recursion(tmp_path, kind, count, compress):
    raw = _chained_headers(kind, count)
    path = tmp_path / "a.tar"
    path.write_bytes(gz(raw) if compress else raw)
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeArchiveError, match="chains more than 16 headers"):
        safe_extract(str(path), str(tmp_path / "out"), 1 << 30)


def test_a_few_extended_headers_are_fine(tmp_path):
    long_name = "variables/" + "d" * 120 + "/" + "f" * 200
    raw = tar_bytes([entry(long_name, b"x")], fmt=tarfile.PAX_FORMAT)
    path = tmp_path / "a.tar"
    path.write_bytes(raw)
    (tmp_path / "out").mkdir()
    files = safe_extract(str(path), str(tmp_path / "out"), 1 << 30)
    assert long_name in [f.path for f in files]


def _deep(depth: int, kind: str = "list") -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [65, 2000, 200_000])
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_deep_json_in_a_manifest_or_index_from_a_server(hub_env, hostile, depth, kind):
    from hubkit import registry_latest, resolve

    hostile.serve_json("/acme/m/1.json", b'{"sha256": "' + b"0" * 64 + b'", "size": 1, "variants": ' + _deep(depth, kind) + b"}")
    hostile.serve_json("/acme/m/index.json", _deep(depth, kind))
    with pytest.raises(DownloadError, match=r"not JSON.*nests more than 64 levels"):
        resolve(f"{hostile.url}/acme/m/1")
    with pytest.raises(DownloadError, match="nests more than 64 levels"):
        registry_latest(f"{hostile.url}/acme/m")


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deep_json_in_local_documents(tmp_path, depth):
    from hubkit import registry_latest
    from hubkit.format.safetensors_io import read_store_index
    from hubkit.hub.registry import check_registry

    module = tmp_path / "reg" / "acme" / "m"
    module.mkdir(parents=True)
    (module / "index.json").write_bytes(_deep(depth))
    (module / "1.json").write_bytes(_deep(depth, "dict"))
    (module / "1.tar.gz").write_bytes(gz(tar_bytes([])))
    (tmp_path / "reg" / "index.json").write_bytes(_deep(depth, "dict"))
    with pytest.raises(HubkitError, match="nests more than 64 levels"):
        registry_latest(str(module))
    problems = check_registry(str(tmp_path / "reg"))
    assert problems and all("nests more than 64 levels" in p or "malformed" in p for p in problems), problems
    variables = tmp_path / "variables"
    variables.mkdir()
    (variables / "variables.safetensors.index.json").write_bytes(_deep(depth, "dict"))
    with pytest.raises(FormatError, match="nests more than 64 levels"):
        read_store_index(str(variables))
    (variables / "variables.safetensors.index.json").unlink()
    header = b'{"a": ' + _deep(depth) + b"}"
    (variables / "variables.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(FormatError, match="nests more than 64 levels"):
        read_store_index(str(variables))


def test_manifest_with_a_huge_number_is_refused(hub_env, hostile):
    from hubkit import resolve

    archive = gz(tar_bytes([]))
    body = json.dumps(manifest_for(archive)).encode()[:-1] + b', "x": ' + b"9" * 5000 + b"}"
    hostile.serve_json("/acme/m/1.json", body)
    with pytest.raises(DownloadError, match="not JSON"):
        resolve(f"{hostile.url}/acme/m/1")


def test_gzip_bomb_members_and_padding_are_bounded(tmp_path):
    """Thousands of empty gzip members, or megabytes of zero padding, end quietly or as a bomb: never hang."""
    raw = gz(tar_bytes([entry("graph.pb", b"ok")])) + gz(b"") * 20_000 + bytes(4 << 20)
    path = tmp_path / "a.tar.gz"
    path.write_bytes(raw)
    (tmp_path / "out").mkdir()
    files = safe_extract(str(path), str(tmp_path / "out"), 1 << 30)
    assert "graph.pb" in [f.path for f in files]
    path.write_bytes(gz(tar_bytes([entry("graph.pb", b"ok")])) + bytes(4 << 20) + b"junk")
    (tmp_path / "out2").mkdir()
    with pytest.raises(DownloadError, match="corrupted"):
        safe_extract(str(path), str(tmp_path / "out2"), 1 << 30)
    os.unlink(path)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_registry_document_is_inflated_with_a_bound(hostile, encoding):
    """A server may compress a manifest although hubkit asks for identity: decoded here, never past 64 MB."""
    import gzip

    from hubkit.hub.config import HubConfig
    from hubkit.hub.http import HttpClient

    compressor = zlib.compressobj(9, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
    bomb = compressor.compress(b'{"a": "') + b"".join(compressor.compress(b" " * (1 << 20)) for _ in range(1000))
    bomb += compressor.compress(b'"}') + compressor.flush()  # 1 MB that inflates to 1 GB
    small = (zlib if encoding == "deflate" else gzip).compress(b'{"name": "acme/m"}')

    def serve(body):
        def handle(h):
            h.send_response(200)
            h.send_header("Content-Encoding", encoding)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        return handle

    hostile.routes["/bomb.json"] = serve(bomb)
    hostile.routes["/small.json"] = serve(small)
    client = HttpClient(HubConfig.from_env(retries=0))
    assert client.get_json(f"{hostile.url}/small.json") == {"name": "acme/m"}
    tracemalloc.start()
    try:
        with pytest.raises(DownloadError, match="larger than"):
            client.get_json(f"{hostile.url}/bomb.json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20
