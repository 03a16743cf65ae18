"""Publish exported module directories into a static registry root.

    python scripts/publish.py MODULE_DIR REGISTRY_ROOT --name acme/text-embedding [--version N] [--description TEXT]

The module is validated by loading it, packed deterministically as <N>.tar.gz, described in <N>.json,
and the indexes and the index.html catalog of the root are rebuilt. Serve the root with any static file
server (see registry/README.md); `hubkit registry serve ROOT` runs a development server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import sys

from hubkit.errors import HubkitError
from hubkit.hub import check_registry, publish


def main(argv: list[str] | None = None) -> int:
    """Publishes one module; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module_dir", help="an exported module directory")
    parser.add_argument("registry_root", help="the registry root directory (created if missing)")
    parser.add_argument("--name", required=True, help="publisher/name, e.g. acme/text-embedding")
    parser.add_argument("--version", type=int, default=None, help="default: one more than the newest")
    parser.add_argument("--description", default="", help="one line shown in the indexes and the catalog")
    parser.add_argument("--check", action="store_true", help="verify the whole registry afterwards")
    args = parser.parse_args(argv)
    try:
        manifest = publish(args.module_dir, args.registry_root, name=args.name, version=args.version,
                           description=args.description)
    except HubkitError as exc:
        print(f"publish: error: {exc}", file=sys.stderr)
        return 1
    print(f"Published {manifest['name']} version {manifest['version']}: {manifest['size']} bytes, "
          f"sha256 {manifest['sha256']}")
    print(f"Load it with: hubkit.Module(\"<registry URL>/{manifest['name']}/{manifest['version']}\")")
    if args.check:
        problems = check_registry(args.registry_root)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
