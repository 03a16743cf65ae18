"""hub (filled in by its owner)."""

__all__: list[str] = []
# Names lifted into the top-level hubkit namespace.
__top_level__: list[str] = []
