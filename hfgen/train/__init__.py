"""Training methods: one plain Accelerate loop per file, dispatched by the recipe's `method`."""

from __future__ import annotations

from pathlib import Path

from ..config import Recipe


def _gan(recipe: Recipe) -> Path:
    from .gan import run

    return run(recipe)


def _vae(recipe: Recipe) -> Path:
    from .vae import run

    return run(recipe)


# `method` -> run(recipe). Imports are deferred so `hfgen --help` and recipe validation stay fast.
METHODS = {"gan": _gan, "vae": _vae}


def run(recipe: Recipe) -> Path:
    """Run the training method the recipe names; returns its output folder."""
    return METHODS[recipe.method](recipe)
