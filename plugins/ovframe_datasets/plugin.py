"""Registers the datasets components (being built; see the issue)."""
