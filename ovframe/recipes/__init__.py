"""Recipes: YAML files that pin a whole pipeline; recipe sets: ablation matrices over a base recipe."""

from .resolve import load_recipe, load_tree
from .schema import Recipe, Section
from .sets import RecipeSet, expand, is_recipe_set, validate_set

__all__ = ["Recipe", "RecipeSet", "Section", "expand", "is_recipe_set", "load_recipe", "load_tree", "validate_set"]
