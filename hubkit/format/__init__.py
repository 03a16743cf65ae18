"""The on-disk module format: the protobuf schema, graph (de)serialization, the variables store, the marker.

See ARCHITECTURE.md ("On-disk module format") for the directory layout this package reads and writes.
"""

from hubkit.format.graph_codec import GRAPH_FILE
from hubkit.format.marker import FORMAT_VERSION, MARKER_FILE, read_marker
from hubkit.format.safetensors_io import INDEX_FILE, SINGLE_FILE, VARIABLES_DIR

__all__ = ["FORMAT_VERSION", "GRAPH_FILE", "INDEX_FILE", "MARKER_FILE", "SINGLE_FILE", "VARIABLES_DIR", "read_marker"]
# Names lifted into the top-level hubkit namespace.
__top_level__: list[str] = []
