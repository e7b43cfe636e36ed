"""Training: one engine (`hfgen.train.engine`) that every method plugs into (`hfgen.train.methods`).

    engine.py         the loop: set-up, precision, resume, cadence, checkpoints, final save
    accelerator.py    Accelerator set-up, seeding, threads, the multi-process launch guard
    hardware.py       CPU/GPU facts and the `mixed_precision: auto` choice
    checkpoint.py     output folders, checkpoints (safetensors + JSON, via state_files.py), resume
    divergence.py     finiteness checks and where a diverged run can continue
    batches.py        seeded epoch order, loaders, resumable iteration
    trackers.py       JSONL / TensorBoard logging;  progress.py  the progress bar
    optim.py          AdamW, schedules, backward_and_step; param_groups.py  decay / layer-wise groups
    selection.py      best-model selection and early stopping; generator_eval.py  FID during training
    image_splits.py   the image splits every image method loads
    methods/          one file per method: what is its own (model, data, one step, evaluation, artifact)
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..config import Recipe


# `method` -> (module of hfgen.train.methods, the factory that takes the recipe and returns the method). Imported
# on use, so `hfgen --help` and recipe validation stay fast. `tokenizer` trains no network: it has a plain `run`.
METHODS = {
    "gan": ("gan", "GAN"),
    "vae": ("vae", "VAE"),
    "diffusion": ("diffusion", "Diffusion"),
    "tokenizer": ("tokenizer", None),
    "mlm": ("mlm", "MaskedLM"),
    "contrastive": ("contrastive", "contrastive_method"),
    "classifier": ("classifier", "Classifier"),
    "autoencoder": ("autoencoder", "Autoencoder"),
}


def build_method(recipe: Recipe):
    """The method object the recipe's `method` names (not yet built: the engine calls its `build`)."""
    module_name, factory = METHODS[recipe.method]
    module = importlib.import_module(f".methods.{module_name}", __name__)
    return getattr(module, factory)(recipe)


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
        if METHODS[recipe.method][1] is None:
            output_dir = importlib.import_module(f".methods.{METHODS[recipe.method][0]}", __name__).run(recipe)
        else:
            from .engine import train

            output_dir = train(recipe, build_method(recipe))
    if hub.push and PartialState().is_main_process:
        push_output_dir(output_dir, hub, recipe)
    return output_dir
