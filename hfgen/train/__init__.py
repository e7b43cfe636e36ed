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


def _tokenizer(recipe: Recipe) -> Path:
    from .tokenizer import run

    return run(recipe)


def _mlm(recipe: Recipe) -> Path:
    from .mlm import run

    return run(recipe)


def _contrastive(recipe: Recipe) -> Path:
    from .contrastive import run

    return run(recipe)


def _classifier(recipe: Recipe) -> Path:
    from .classifier import run

    return run(recipe)


def _autoencoder(recipe: Recipe) -> Path:
    from .autoencoder import run

    return run(recipe)


# `method` -> run(recipe). Imports are deferred so `hfgen --help` and recipe validation stay fast.
METHODS = {"gan": _gan, "vae": _vae, "tokenizer": _tokenizer, "mlm": _mlm, "contrastive": _contrastive, "classifier": _classifier, "autoencoder": _autoencoder}


def run(recipe: Recipe) -> Path:
    """Run the training method the recipe names; returns its output folder. Every method is shared the
    same way from here: with `hub.push_checkpoints` each saved checkpoint goes to the Hub, and with
    `hub.push` the finished folder does, from the main process only (hfgen.hub)."""
    from accelerate import PartialState

    from ..hub import push_checkpoint, push_output_dir
    from .checkpoint import on_checkpoint_saved

    hub = recipe.hub
    callback = None
    if hub.push_checkpoints:
        def callback(checkpoint: Path) -> None:
            push_checkpoint(checkpoint, hub, recipe.train.output_dir)

    with on_checkpoint_saved(callback):
        output_dir = METHODS[recipe.method](recipe)
    if hub.push and PartialState().is_main_process:
        push_output_dir(output_dir, hub, recipe)
    return output_dir
