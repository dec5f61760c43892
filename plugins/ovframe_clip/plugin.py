"""Registers the clip components (being built; see the issue)."""
