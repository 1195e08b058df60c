"""The model registry: immutable versions, moving aliases, model cards, lineage."""
