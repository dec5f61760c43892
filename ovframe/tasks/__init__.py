"""The core's own tasks (evaluate, predict), registered as the built-in plugin `ovframe`."""
