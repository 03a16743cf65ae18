"""Regenerates hubkit/{format,module}/*_pb2.py and their *_pb2.pyi type stubs from the .proto files, with grpc_tools' protoc.

Usage: ``python scripts/compile_protos.py`` (needs ``pip install grpcio-tools``, part of the ``dev`` extra).
The generated files are committed; the protobuf runtime pinned in pyproject.toml must accept the gencode
version printed in their header.
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIRS = (ROOT / "hubkit" / "format", ROOT / "hubkit" / "module", ROOT / "hubkit" / "importers" / "tf1" / "proto")


def main() -> int:
    """Compiles every .proto in hubkit/format and hubkit/module; returns the protoc exit status."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError:
        print("grpc_tools is not installed: pip install grpcio-tools", file=sys.stderr)
        return 1
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    protos = sorted(str(p.relative_to(ROOT)) for d in PROTO_DIRS for p in d.glob("*.proto"))
    args = ["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={ROOT}", f"--pyi_out={ROOT}", *protos]
    status = protoc.main(args)
    if status == 0:
        print("compiled", ", ".join(protos))
    return status


if __name__ == "__main__":
    sys.exit(main())
