"""CLIP family: text encoder with a persistent cache, masked-region classifiers, adapters (MPT, FT, MPT+FT)."""
