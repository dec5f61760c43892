"""The embedded synthetic benchmark and the small models trained on it."""
