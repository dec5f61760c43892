"""Which folders are packages: the one thing pyproject.toml cannot say.

Everything else (metadata, dependencies, entry points, package data) is in pyproject.toml. The shipped
recipes live in recipes/ (where the docs and repository users find them) and install as the package
`ovframe_recipes`, so that `ovframe run demo` works from any folder after `pip install .`.
"""

from setuptools import find_packages, setup

core = find_packages(".", include=["ovframe", "ovframe.*"])
plugins = find_packages("plugins", include=["ovframe_*"])

setup(
    packages=[*core, *plugins, "ovframe_recipes"],
    package_dir={**{p: "plugins/" + p.replace(".", "/") for p in plugins}, "ovframe_recipes": "recipes"},
)
