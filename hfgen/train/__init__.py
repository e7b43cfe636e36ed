"""Training methods: one plain Accelerate loop per file, dispatched by the recipe's `method`."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..config import Recipe


# `method` -> the module of hfgen.train whose `run(recipe)` trains it. Imported on use, so
# `hfgen --help` and recipe validation stay fast.
METHODS = {
    "gan": "gan",
    "vae": "vae",
    "tokenizer": "tokenizer",
    "mlm": "mlm",
    "contrastive": "contrastive",
    "classifier": "classifier",
    "autoencoder": "autoencoder",
}


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
        output_dir = importlib.import_module(f".{METHODS[recipe.method]}", __name__).run(recipe)
    if hub.push and PartialState().is_main_process:
        push_output_dir(output_dir, hub, recipe)
    return output_dir
