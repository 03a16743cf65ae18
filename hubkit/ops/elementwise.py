"""Op family: elementwise (filled in by its owner)."""

__all__: list[str] = []
