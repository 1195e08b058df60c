"""Packaging: model bundles, build contexts, container images."""
