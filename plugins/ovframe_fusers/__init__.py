"""Fusers: from per-mask opinions to a semantic map (OVSeg's geometric ensemble and its ablations)."""
