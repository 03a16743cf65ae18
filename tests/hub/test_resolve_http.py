"""Resolving registry and archive URLs against a real HTTP server on 127.0.0.1, with injected faults."""

import builtins
import filecmp
import hashlib
import os
import shutil

import pytest

import hubkit
from hubkit.errors import DownloadError, IntegrityError, ResolveError
from hubkit.hub import Cache, HubConfig, cache_key, normalize_handle, registry_latest, resolve

ARCHIVE = "/acme/echo/1.tar.gz"
MANIFEST = "/acme/echo/1.json"


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _sha256(path):
    return hashlib.sha256(_read(path)).hexdigest()


def _cache_dirs(config):
    if not os.path.isdir(config.cache_dir):
        return []
    return sorted(os.listdir(config.cache_dir))


def _same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    return not cmp.left_only and not cmp.right_only and not cmp.diff_files and all(
        _same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


def test_registry_handle_downloads_once_then_hits_cache(hub_env, registry_server, fake_module):
    handle = f"{registry_server.url}/acme/echo/1"
    path = resolve(handle)
    assert _same_tree(path, fake_module)
    assert registry_server.count(MANIFEST) == 1 and registry_server.count(ARCHIVE) == 1
    # A hit: no request at all, and the same directory.
    before = len(registry_server.requests)
    assert resolve(handle + "/") == path
    assert hubkit.resolve(handle.upper().replace("/ACME/ECHO", "/acme/echo")) == path
    assert len(registry_server.requests) == before
    # The descriptor says what the entry holds.
    entry = Cache(hub_env).entries().__next__()
    assert entry.handle == normalize_handle(handle) and entry.complete
    assert entry.descriptor["archive_sha256"] == _sha256(os.path.join(registry_server.root, ARCHIVE[1:]))
    assert "fetched_at" in entry.descriptor


def test_user_agent_names_hubkit(hub_env, registry_server):
    resolve(f"{registry_server.url}/acme/echo/1")
    agents = {headers.get("User-Agent") for _, headers in registry_server.requests}
    assert agents == {f"hubkit/{hubkit.__version__}"}


def test_registry_latest(hub_env, registry_server, fake_module):
    hubkit.publish(fake_module, registry_server.root, name="acme/echo", validate=lambda d: {})
    assert registry_latest(f"{registry_server.url}/acme/echo/") == f"{registry_server.url}/acme/echo/2"
    with pytest.raises(DownloadError, match="does not exist"):
        registry_latest(f"{registry_server.url}/acme/nothing")


def test_cache_hit_cost_no_network_import(hub_env, registry_server):
    handle = f"{registry_server.url}/acme/echo/1"
    resolve(handle)
    code = (f"import sys, hubkit; hubkit.resolve({handle!r}); "
            "print(sorted(m for m in ('requests', 'urllib3', 'tqdm') if m in sys.modules))")
    from tests.hub.helpers import run_python

    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_wrong_sha256_raises_integrity_error_and_caches_nothing(hub_env, registry_server):
    registry_server.faults[ARCHIVE] = ["wrong"]
    with pytest.raises(IntegrityError, match="sha256"):
        resolve(f"{registry_server.url}/acme/echo/1")
    assert _cache_dirs(hub_env) == []  # no entry, no temp file, no lock left behind


def test_truncated_archive_on_server_is_an_integrity_error(hub_env, registry_server):
    archive = os.path.join(registry_server.root, ARCHIVE[1:])
    data = _read(archive)
    with open(archive, "wb") as f:
        f.write(data[:-40])
    with pytest.raises(IntegrityError, match="manifest declares"):
        resolve(f"{registry_server.url}/acme/echo/1")
    assert _cache_dirs(hub_env) == []


def test_truncated_unpinned_archive_url_is_a_corrupted_archive(hub_env, registry_server, tmp_path):
    data = _read(os.path.join(registry_server.root, ARCHIVE[1:]))
    (tmp_path / "registry" / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DownloadError, match=r"corrupted or not a \.tar\.gz"):
        resolve(f"{registry_server.url}/cut.tar.gz")
    assert _cache_dirs(hub_env) == []


@pytest.mark.parametrize("path", [MANIFEST, ARCHIVE])
def test_html_page_is_not_a_module(hub_env, registry_server, path):
    registry_server.faults[path] = ["html"]
    with pytest.raises(DownloadError, match="does not serve a hubkit"):
        resolve(f"{registry_server.url}/acme/echo/1")
    assert _cache_dirs(hub_env) == []


def test_404_says_module_or_version_does_not_exist(hub_env, registry_server):
    with pytest.raises(DownloadError, match=r"does not exist \(HTTP 404\): no such module or version"):
        resolve(f"{registry_server.url}/acme/echo/7")
    assert registry_server.count("/acme/echo/7.json") == 1  # a 404 is not retried


def test_manifest_of_another_module_or_version_is_refused(hub_env, registry_server):
    # A registry whose acme/other/3 files are copies of acme/echo/1: the manifest says so.
    source = os.path.join(registry_server.root, "acme", "echo")
    target = os.path.join(registry_server.root, "acme", "other")
    os.makedirs(target)
    shutil.copy(os.path.join(source, "1.json"), os.path.join(target, "3.json"))
    shutil.copy(os.path.join(source, "1.tar.gz"), os.path.join(target, "3.tar.gz"))
    handle = f"{registry_server.url}/acme/other/3"
    with pytest.raises(DownloadError, match=r"describes module 'acme/echo' version 1, but the handle .* names "
                                            r"module 'acme/other' version 3"):
        resolve(handle)
    assert registry_server.count("/acme/other/3.tar.gz") == 0 and _cache_dirs(hub_env) == []


@pytest.mark.parametrize("version", ["0", "01"])
def test_version_zero_or_with_leading_zeros_is_not_a_registry_handle(hub_env, registry_server, version):
    with pytest.raises(ResolveError, match="No resolver supports handle"):
        resolve(f"{registry_server.url}/acme/echo/{version}")
    assert registry_server.requests == []


def test_500_then_success(hub_env, registry_server):
    registry_server.faults[MANIFEST] = ["500"]
    registry_server.faults[ARCHIVE] = ["500", "503-retry-after"]
    assert os.path.isdir(resolve(f"{registry_server.url}/acme/echo/1"))
    assert registry_server.count(MANIFEST) == 2 and registry_server.count(ARCHIVE) == 3


def test_500_forever_gives_up_after_bounded_retries(hub_env, registry_server):
    registry_server.faults[MANIFEST] = ["500"] * 10
    with pytest.raises(DownloadError, match="after 3 attempts: HTTP 500"):
        resolve(f"{registry_server.url}/acme/echo/1")
    assert registry_server.count(MANIFEST) == 3


def test_connection_reset_mid_body_is_retried(hub_env, registry_server, fake_module):
    registry_server.faults[ARCHIVE] = ["reset"]
    path = resolve(f"{registry_server.url}/acme/echo/1")
    assert _same_tree(path, fake_module)
    assert registry_server.count(ARCHIVE) == 2


def test_interrupted_download_resumes_with_range(hub_env, registry_server, fake_module):
    registry_server.faults[ARCHIVE] = ["truncate"]
    path = resolve(f"{registry_server.url}/acme/echo/1")
    assert _same_tree(path, fake_module)
    size = os.path.getsize(os.path.join(registry_server.root, ARCHIVE[1:]))
    ranges = [h.get("Range") for p, h in registry_server.requests if p == ARCHIVE]
    assert ranges == [None, f"bytes={size // 2}-"]


def test_interrupted_download_restarts_when_range_unsupported(hub_env, registry_server, fake_module):
    registry_server.range_support = False
    registry_server.faults[ARCHIVE] = ["reset"]
    path = resolve(f"{registry_server.url}/acme/echo/1")
    assert _same_tree(path, fake_module)
    assert registry_server.count(ARCHIVE) == 2


def test_slow_server_beyond_read_timeout(hub_env, registry_server, monkeypatch):
    monkeypatch.setenv("HUBKIT_READ_TIMEOUT", "0.3")
    monkeypatch.setenv("HUBKIT_RETRIES", "1")
    registry_server.faults[ARCHIVE] = ["slow", "slow"]
    with pytest.raises(DownloadError, match="after 2 attempts"):
        resolve(f"{registry_server.url}/acme/echo/1")
    assert _cache_dirs(hub_env) == []


def test_connection_refused_is_a_download_error(hub_env, monkeypatch):
    from tests.hub.helpers import free_port

    monkeypatch.setenv("HUBKIT_RETRIES", "1")
    port = free_port()
    with pytest.raises(DownloadError, match=rf"could not connect to 127\.0\.0\.1:{port} \(connection refused\)"):
        resolve(f"http://127.0.0.1:{port}/acme/echo/1")


def test_archive_url_with_and_without_pin(hub_env, registry_server, fake_module):
    archive = os.path.join(registry_server.root, ARCHIVE[1:])
    digest = _sha256(archive)
    assert _same_tree(resolve(f"{registry_server.url}{ARCHIVE}"), fake_module)
    assert _same_tree(resolve(f"{registry_server.url}{ARCHIVE}#sha256={digest}"), fake_module)
    with pytest.raises(IntegrityError, match="but 0000"):
        resolve(f"{registry_server.url}{ARCHIVE}#sha256={'0' * 64}")


def test_archive_without_marker_is_not_a_module(hub_env, registry_server):
    from tests.hub.archives import build_archive, file_entry

    build_archive([file_entry("README", b"hi")], path=os.path.join(registry_server.root, "plain.tar.gz"),
                  with_marker=False)
    with pytest.raises(DownloadError, match=r"has no 'hubkit_module\.pb'"):
        resolve(f"{registry_server.url}/plain.tar.gz")
    assert _cache_dirs(hub_env) == []


def test_malicious_archive_from_server_is_refused(hub_env, registry_server):
    import tarfile

    from tests.hub.archives import build_archive, special_entry

    build_archive([special_entry("assets/x", tarfile.SYMTYPE, "/etc/passwd")],
                  path=os.path.join(registry_server.root, "evil.tar.gz"))
    with pytest.raises(DownloadError, match="symbolic link"):
        resolve(f"{registry_server.url}/evil.tar.gz")
    assert _cache_dirs(hub_env) == []


def test_os_purged_cache_dir_is_downloaded_again(hub_env, registry_server, fake_module):
    handle = f"{registry_server.url}/acme/echo/1"
    path = resolve(handle)
    # The OS cleaner deletes files inside the entry but leaves directories (and maybe the record).
    os.unlink(os.path.join(path, "variables", "variables.safetensors"))
    assert resolve(handle) == path
    assert _same_tree(path, fake_module)
    assert registry_server.count(ARCHIVE) == 2
    # ... or deletes the whole module directory.
    shutil.rmtree(path)
    assert resolve(handle) == path and _same_tree(path, fake_module)
    assert registry_server.count(ARCHIVE) == 3


def test_entry_without_completion_record_is_never_loaded(hub_env, registry_server):
    handle = f"{registry_server.url}/acme/echo/1"
    path = resolve(handle)
    os.unlink(os.path.join(os.path.dirname(path), "complete.json"))
    assert resolve(handle) == path
    assert registry_server.count(ARCHIVE) == 2


def test_offline_mode(hub_env, registry_server, monkeypatch):
    cached = f"{registry_server.url}/acme/echo/1"
    path = resolve(cached)
    monkeypatch.setenv("HUBKIT_OFFLINE", "1")
    before = len(registry_server.requests)
    assert resolve(cached) == path
    with pytest.raises(ResolveError, match=r"not in the cache .*HUBKIT_OFFLINE") as info:
        resolve(f"{registry_server.url}/acme/echo/2")
    assert hub_env.cache_dir in str(info.value) and "acme/echo/2" in str(info.value)
    with pytest.raises(ResolveError, match="HUBKIT_OFFLINE"):
        resolve(f"{registry_server.url}{ARCHIVE}#sha256={'1' * 64}")
    with pytest.raises(ResolveError, match="HUBKIT_OFFLINE"):
        registry_latest(f"{registry_server.url}/acme/echo")
    assert len(registry_server.requests) == before


def _forbid_writes(monkeypatch):
    """Makes every write-like filesystem call fail, as in a read-only cache (works even as root)."""
    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            raise PermissionError(f"read-only: {file}")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(f"read-only: {path}")
        return real_os_open(path, flags, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    for name in ("mkdir", "makedirs", "rename", "replace", "unlink", "remove", "rmdir", "utime", "link"):
        monkeypatch.setattr(os, name, refuse)


def test_read_only_cache_hit_writes_nothing(hub_env, registry_server, monkeypatch):
    handle = f"{registry_server.url}/acme/echo/1"
    path = resolve(handle)
    with monkeypatch.context() as patch:
        _forbid_writes(patch)
        assert resolve(handle) == path


def _resolve_in_child(handle, cache_dir, timeout=60):
    """Resolves in a forked child (as user nobody when we are root, since root ignores permissions).

    Returns ``(outcome, cache_writable)``: ``"ok:<path>"`` or ``"error:<type>: <message>"``, and whether the
    child could create a file in the cache directory.
    """
    import select
    import signal
    import time
    import warnings

    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with the server thread running
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            try:
                with open(os.path.join(cache_dir, "probe"), "w"):
                    writable = True
            except OSError:
                writable = False
            try:
                outcome = "ok:" + resolve(handle)
            except Exception as exc:
                outcome = f"error:{type(exc).__name__}: {exc}"
            os.write(write_end, f"{int(writable)}{outcome}".encode())
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
    if time.monotonic() >= deadline:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"the child resolving {handle!r} did not finish within {timeout} s")
    _, status = os.waitpid(pid, 0)
    report = b"".join(chunks).decode()
    assert os.waitstatus_to_exitcode(status) == 0 and report, f"the child failed: status {status}, {report!r}"
    return report[1:], report[0] == "1"


def test_read_only_cache_dir_hit(hub_env, registry_server, monkeypatch):
    import stat
    import tempfile

    # A cache outside pytest's tmp dirs (those are private to their owner, so user nobody could not reach it).
    cache_dir = tempfile.mkdtemp(prefix="hubkit-ro-cache-")
    parent = os.path.dirname(cache_dir)
    assert os.stat(parent).st_mode & stat.S_IXOTH, f"{parent} must be traversable by every user"
    monkeypatch.setenv("HUBKIT_CACHE_DIR", cache_dir)
    handle = f"{registry_server.url}/acme/echo/1"
    path = resolve(handle)
    requests = len(registry_server.requests)
    walked = list(os.walk(cache_dir))
    try:
        for directory, _, files in walked:
            for name in files:
                os.chmod(os.path.join(directory, name), 0o444)
            os.chmod(directory, 0o555)
        outcome, writable = _resolve_in_child(handle, cache_dir)
        assert not writable, "the cache directory must be read-only for the child, or this test proves nothing"
        assert outcome == f"ok:{path}"
        assert len(registry_server.requests) == requests  # a hit makes no request
    finally:
        for directory, _, _ in walked:
            os.chmod(directory, 0o755)
        shutil.rmtree(cache_dir)


def test_file_urls_and_local_archives(hub_env, registry_root, fake_module, tmp_path):
    archive = os.path.join(registry_root, "acme", "echo", "1.tar.gz")
    assert resolve(fake_module) == os.path.abspath(fake_module)
    assert resolve(f"file://{fake_module}") == os.path.abspath(fake_module)
    extracted = resolve(f"file://{archive}")
    assert _same_tree(extracted, fake_module) and extracted.startswith(hub_env.cache_dir)
    assert resolve(archive) == extracted  # a plain path to the archive names the same file
    digest = _sha256(archive)
    assert _same_tree(resolve(f"file://{archive}#sha256={digest}"), fake_module)
    with pytest.raises(IntegrityError):
        resolve(f"file://{archive}#sha256={'2' * 64}")
    with pytest.raises(ResolveError, match="does not exist"):
        resolve(f"file://{tmp_path}/missing.tar.gz")


def test_local_directory_without_marker(hub_env, tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "graph.pb").write_bytes(b"x")
    with pytest.raises(ResolveError, match=r"has no 'hubkit_module\.pb'"):
        resolve(str(tmp_path / "half"))
    with pytest.raises(ResolveError, match="does not exist"):
        resolve(str(tmp_path / "nothing"))


@pytest.mark.parametrize("handle", ["", "   ", "\t\n", b"/x"])
def test_empty_handle_is_refused_not_the_working_directory(hub_env, fake_module, monkeypatch, handle):
    monkeypatch.chdir(fake_module)  # a module directory: "" must not quietly resolve to it
    with pytest.raises(ResolveError, match="must be a"):
        resolve(handle)
    with pytest.raises(ResolveError, match="must be a"):
        hubkit.hub.ResolverChain([hubkit.hub.resolvers.LocalPathResolver()])(handle)


def test_unsupported_handle_lists_what_was_tried(hub_env):
    with pytest.raises(ResolveError) as info:
        resolve("https://example.invalid/acme/text-embedding")
    message = str(info.value)
    for name in ("LocalPathResolver", "FileUrlResolver", "HttpArchiveResolver", "HttpRegistryResolver"):
        assert name in message
    assert "registry_latest" in message
    with pytest.raises(ResolveError, match="No resolver supports handle 'gs://bucket/m'"):
        resolve("gs://bucket/m")


def test_user_registered_resolver_is_asked_first(hub_env, fake_module):
    class BucketResolver:
        def is_supported(self, handle):
            return handle.startswith("gs://")

        def __call__(self, handle):
            return fake_module

    resolver = BucketResolver()
    hubkit.register_resolver(resolver)
    try:
        assert resolve("gs://bucket/m") == fake_module
    finally:
        hubkit.hub.unregister_resolver(resolver)
    with pytest.raises(ResolveError, match="No resolver supports"):
        resolve("gs://bucket/m")
    with pytest.raises(ResolveError, match="needs an is_supported"):
        hubkit.register_resolver(object())


def test_cache_key_is_hash_of_normalized_handle(hub_env, registry_server):
    handle = f"{registry_server.url}/acme/echo/1"
    path = resolve(handle)
    assert os.path.basename(os.path.dirname(path)) == cache_key(normalize_handle(handle))


def test_bad_environment_values(monkeypatch, tmp_path):
    monkeypatch.setenv("HUBKIT_OFFLINE", "maybe")
    with pytest.raises(ResolveError, match="HUBKIT_OFFLINE='maybe' is not a boolean"):
        HubConfig.from_env()
    monkeypatch.setenv("HUBKIT_OFFLINE", "1")
    monkeypatch.setenv("HUBKIT_READ_TIMEOUT", "soon")
    with pytest.raises(ResolveError, match="HUBKIT_READ_TIMEOUT='soon' is not a float"):
        HubConfig.from_env()


def test_default_cache_dir_is_per_user_not_tmp(monkeypatch):
    import tempfile

    import platformdirs

    monkeypatch.delenv("HUBKIT_CACHE_DIR", raising=False)
    from hubkit.hub import default_cache_dir

    assert default_cache_dir() == os.path.abspath(platformdirs.user_cache_dir("hubkit"))
    assert not default_cache_dir().startswith(tempfile.gettempdir() + os.sep)


def test_a_wrong_gzip_crc_fails_an_unpinned_archive_url_only(hub_env, registry_server, tmp_path, fake_module):
    """Unpinned, zlib checks each member's CRC-32; pinned, the sha256 of every byte is the check (the CRC
    is not computed: ~10% of an install's CPU)."""
    data = bytearray(_read(os.path.join(registry_server.root, ARCHIVE[1:])))
    data[-8] ^= 0x01  # the last member's CRC-32 (the length after it stays right)
    (tmp_path / "registry" / "crc.tar.gz").write_bytes(bytes(data))
    with pytest.raises(DownloadError, match=r"corrupted or not a \.tar\.gz"):
        resolve(f"{registry_server.url}/crc.tar.gz")
    assert _cache_dirs(hub_env) == []
    digest = hashlib.sha256(bytes(data)).hexdigest()
    assert _same_tree(resolve(f"{registry_server.url}/crc.tar.gz#sha256={digest}"), fake_module)


def test_a_pinned_archive_that_states_a_wrong_crc_is_named_so_by_verify(hub_env, registry_server, tmp_path):
    """The CRC-32 of a large file of a pinned download is the one its gzip member's trailer states (not
    computed); `verify` then names a mismatch as such instead of calling the file modified."""
    import io
    import zlib

    from hubkit.hub.registry import pack_module
    from tests.hub.helpers import make_fake_module

    payload = os.urandom(2 << 20)
    module = make_fake_module(str(tmp_path / "big"), payload=payload)
    buffer = io.BytesIO()
    pack_module(module, buffer)
    data, position = bytearray(buffer.getvalue()), 0
    while position < len(data):  # find the member holding exactly the payload; break its stated CRC-32
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = decompressor.decompress(bytes(data[position:]))
        end = len(data) - len(decompressor.unused_data)
        if out == payload:
            data[end - 8] ^= 0x01
            break
        position = end
    else:
        raise AssertionError("no member holds exactly the payload")
    honest = buffer.getvalue()
    (tmp_path / "registry" / "honest.tar.gz").write_bytes(honest)
    resolve(f"{registry_server.url}/honest.tar.gz#sha256={hashlib.sha256(honest).hexdigest()}")
    (entry,) = Cache(hub_env).entries()
    assert Cache(hub_env).verify(entry) == []
    assert Cache(hub_env).remove(entry.key)
    (tmp_path / "registry" / "stated.tar.gz").write_bytes(bytes(data))
    digest = hashlib.sha256(bytes(data)).hexdigest()
    path = resolve(f"{registry_server.url}/stated.tar.gz#sha256={digest}")
    assert _same_tree(path, module)
    cache = Cache(hub_env)
    (entry,) = cache.entries()
    problems = cache.verify(entry)
    assert len(problems) == 1 and "CRC-32 differs from the one its sha256-pinned archive stated" in problems[0]
    with pytest.raises(DownloadError, match="corrupted"):  # unpinned, zlib checks it
        resolve(f"{registry_server.url}/stated.tar.gz")
