"""Every recipe shipped in recipes/ loads and validates, and states its own launch command."""

from pathlib import Path

import pytest

from hfgen.config import load_recipe

ROOT = Path(__file__).resolve().parent.parent / "recipes"
# recipes/accelerate/ holds Accelerate launch configs, not hfgen recipes: tests/test_accelerate_configs.py checks them
RECIPES = sorted(p for p in ROOT.rglob("*.yaml") if p.parent.name != "accelerate")


def test_recipes_exist():
    assert RECIPES, "no recipes found"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(p.parent.parent.parent)))
def test_recipe_validates(path):
    recipe = load_recipe(path)
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# accelerate launch scripts/"), "a recipe opens with its launch command"
    assert str(path.relative_to(path.parent.parent.parent)) in first_line
    assert recipe.train.output_dir
