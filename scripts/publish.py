"""Publish an exported module directory into a static registry root: the same as `hubkit publish`.

    python scripts/publish.py MODULE_DIR REGISTRY_ROOT --name acme/text-embedding [--version N]
        [--description TEXT] [--base-url URL] [--check]

The module is validated by loading it, packed deterministically as <N>.tar.gz, described in <N>.json,
and the indexes and the catalog pages of the root are rebuilt; --check then verifies the whole root.
Serve the root with any static file server (see registry/README.md); `hubkit registry serve ROOT` runs a
development server on 127.0.0.1.
"""

from __future__ import annotations

import sys

from hubkit.cli import main as hubkit_main


def main(argv: list[str] | None = None) -> int:
    """Publishes one module through ``hubkit publish``; returns the exit status."""
    return hubkit_main(["publish", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
