"""How the example scripts end: one ``error: ...`` line on stderr and exit status 1, never a traceback.

Scripts import it as ``from _cli_errors import run_cli`` (``scripts/`` is on ``sys.path`` when a
script runs; a script loaded by path adds its own directory first).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import hubkit as hk

# What a user's input or environment can cause: wrong files, bad values, missing permissions.
EXPECTED_ERRORS = (hk.HubkitError, OSError)


def run_cli(action: Callable[[], object], done: str) -> int:
    """Runs ``action``; prints ``done`` and returns 0, or prints one error line and returns 1.

    Args:
        action: the script's work, raising a hubkit error or OSError for bad input.
        done: the line printed on stdout on success.

    Returns:
        The exit status: 0, 1 after an expected error, 130 after Ctrl-C.
    """
    try:
        action()
    except EXPECTED_ERRORS as e:
        print(f"error: {' '.join(str(e).split(chr(10)))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(done)
    return 0
