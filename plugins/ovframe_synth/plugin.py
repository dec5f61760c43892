"""Registers the synth components (being built; see the issue)."""
