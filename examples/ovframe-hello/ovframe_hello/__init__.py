"""An example third-party plugin for ovframe."""
