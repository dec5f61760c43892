"""The data engine: captions -> phrases (spaCy) -> each phrase's best proposal (any classifier) -> (mask, phrase) pairs."""
