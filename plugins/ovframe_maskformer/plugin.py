"""Registers the maskformer components (being built; see the issue)."""
