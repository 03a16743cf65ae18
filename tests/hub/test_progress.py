"""The download progress bar: HUBKIT_PROGRESS=1 draws it on stderr, =0 silences it, unset follows the tty."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.hub.helpers import REPO

BAR_LABEL = "acme/echo/1.tar.gz"  # the bar's description: the archive's last three URL parts


def _download(handle: str, progress: str | None, stderr) -> subprocess.CompletedProcess:
    env = dict(os.environ)  # hub_env's private cache, timeouts and no_proxy
    env.pop("HUBKIT_PROGRESS", None)
    if progress is not None:
        env["HUBKIT_PROGRESS"] = progress
    return subprocess.run([sys.executable, "-m", "hubkit", "download", handle], stdout=subprocess.PIPE,
                          stderr=stderr, env=env, cwd=REPO, timeout=60)


def test_progress_1_draws_a_bar_on_stderr(hub_env, registry_server):
    result = _download(f"{registry_server.url}/acme/echo/1", "1", subprocess.PIPE)
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert BAR_LABEL in err and "\r" in err, err  # tqdm redraws in place
    assert os.path.isdir(result.stdout.decode().strip())  # the bar never goes to stdout
    assert BAR_LABEL not in result.stdout.decode()


@pytest.mark.parametrize("progress", ["0", None], ids=["progress-0", "unset-not-a-tty"])
def test_no_bar_when_off_or_when_stderr_is_not_a_terminal(progress, hub_env, registry_server):
    result = _download(f"{registry_server.url}/acme/echo/1", progress, subprocess.PIPE)
    assert result.returncode == 0 and result.stderr == b""
    assert registry_server.count("/acme/echo/1.tar.gz") == 1  # a real download happened, silently


def test_unset_draws_the_bar_when_stderr_is_a_terminal(hub_env, registry_server):
    pty = pytest.importorskip("pty")
    termios = pytest.importorskip("termios")
    import fcntl
    import select
    import struct

    controller, terminal = pty.openpty()
    try:
        # A terminal of 80 columns: tqdm draws nothing on a terminal 0 columns wide (a fresh pty's size).
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        result = _download(f"{registry_server.url}/acme/echo/1", None, terminal)
        out = b""
        while select.select([controller], [], [], 0.5)[0]:  # drained before the terminal side closes
            out += os.read(controller, 65536)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0
    assert BAR_LABEL in out.decode(errors="replace")
