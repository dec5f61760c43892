"""The shipped recipes (YAML files beside this one), installed as the package `ovframe_recipes`.

`ovframe run demo`, `ovframe predict ... --recipe ade150_mpt` and `Segmenter.from_recipe("demo")` find
them by name from any folder (ovframe.recipes.locate).
"""
