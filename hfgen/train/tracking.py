"""Logging, progress and the epoch/batch iteration every training method shares."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from torch.utils.data import BatchSampler, DataLoader, Sampler
from tqdm.auto import tqdm

from ..config import Recipe, recipe_to_dict
from .checkpoint import TrainState


class JSONLTracker(GeneralTracker):
    """An Accelerate tracker that appends `{"step": ..., **values}` lines to logs/metrics.jsonl:
    readable without TensorBoard, and what the tests read."""

    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, logging_dir: str | os.PathLike):
        super().__init__()
        self.path = Path(logging_dir) / "metrics.jsonl"

    @property
    def tracker(self):
        return self.path

    def start(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def store_init_configuration(self, values: dict):
        self.start()
        (self.path.parent / "hparams.json").write_text(json.dumps(values, indent=2, default=str))

    def log(self, values: dict, step: int | None = None, **kwargs):
        self.start()
        scalars = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in values.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 3), **scalars}) + "\n")


def trackers_for(recipe: Recipe) -> list:
    """The trackers `report_to` asks for: JSONL always (unless none), TensorBoard when installed."""
    report_to = recipe.train.report_to
    if report_to == "none":
        return []
    trackers: list = [JSONLTracker(os.path.join(recipe.train.output_dir, "logs"))]
    has_tensorboard = importlib.util.find_spec("tensorboard") is not None
    if report_to == "tensorboard" and not has_tensorboard:
        raise ImportError(f"{recipe.source}: train.report_to is 'tensorboard' but tensorboard is not installed")
    if report_to in ("tensorboard", "auto") and has_tensorboard:
        trackers.append("tensorboard")
    return trackers


def start_tracking(accelerator: Accelerator, recipe: Recipe) -> None:
    """Initialise the trackers with the flattened recipe as hyperparameters."""
    flat = _flatten(recipe_to_dict(recipe))
    accelerator.init_trackers("hfgen", config={k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()})


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class EpochSampler(Sampler[int]):
    """Indices in a fresh seeded permutation every epoch (or in order), independent of the
    global RNG: epoch e's order is a pure function of (seed, e), so a resumed run sees exactly
    the batches the uninterrupted run would have."""

    def __init__(self, num_examples: int, seed: int, shuffle: bool = True):
        self.num_examples, self.seed, self.shuffle, self.epoch = num_examples, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_examples

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.num_examples))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_examples, generator=generator).tolist())


def build_dataloader(
    dataset, batch_size: int, seed: int, shuffle: bool, drop_last: bool, num_workers: int = 0, collate_fn=None
) -> DataLoader:
    """A DataLoader over a map-style dataset with an `EpochSampler`; its own torch.Generator
    keeps it off the global RNG. Prepare it with the Accelerator; `iterate_batches` sets the epoch."""
    sampler = EpochSampler(len(dataset), seed=seed, shuffle=shuffle)
    loader = DataLoader(
        dataset,
        batch_sampler=BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last),
        num_workers=num_workers,
        collate_fn=collate_fn,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    return loader


def total_training_steps(recipe: Recipe, batches_per_epoch: int) -> int:
    """Optimizer steps in the run: `max_steps`, else epochs x ceil(batches / accumulation)."""
    train = recipe.train
    if train.max_steps is not None:
        return train.max_steps
    if batches_per_epoch == 0:
        raise ValueError(f"{recipe.source}: the training split has fewer examples than one batch (train.batch_size)")
    return train.num_epochs * math.ceil(batches_per_epoch / train.gradient_accumulation_steps)


def iterate_batches(accelerator: Accelerator, loader, state: TrainState, total_steps: int) -> Iterator:
    """Yield batches of a prepared loader epoch after epoch until `state.step` reaches
    `total_steps`, resuming mid-epoch from `state` and keeping `state.epoch`/`batches_in_epoch`
    current. The budget is checked before a batch is counted, so a checkpoint written after the
    last step records exactly the batches that were trained on."""
    while state.step < total_steps:
        # through the prepared loader, not the sampler: accelerate's loader re-sets its sampler's
        # epoch from its own iteration counter at every pass, which a resumed run must move too
        loader.set_epoch(state.epoch)
        epoch_loader = accelerator.skip_first_batches(loader, state.batches_in_epoch) if state.batches_in_epoch else loader
        for batch in epoch_loader:
            if state.step >= total_steps:
                return
            state.batches_in_epoch += 1
            yield batch
        state.epoch += 1
        state.batches_in_epoch = 0


def progress_bar(accelerator: Accelerator, total: int, initial: int, desc: str) -> tqdm:
    """A tqdm bar on the local main process only."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not accelerator.is_local_main_process, dynamic_ncols=True)


class TrainingDiverged(FloatingPointError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


def check_finite(accelerator: Accelerator, losses: dict[str, torch.Tensor], step: int, output_dir: str) -> None:
    """Stop the run (on every process together) when any loss is NaN/inf."""
    bad = torch.tensor([0.0 if torch.isfinite(v.detach()).all() else 1.0 for v in losses.values()], device=accelerator.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if bad.sum() > 0:
        from .checkpoint import list_checkpoints

        names = [name for name, flag in zip(losses, bad.tolist()) if flag]
        last = list_checkpoints(output_dir)
        raise TrainingDiverged(
            f"loss {', '.join(names)} is not finite at step {step + 1}; stopping. "
            + (f"The last good checkpoint is {last[-1]} (train.resume: auto continues from it; lower "
               "train.learning_rate or set train.max_grad_norm)." if last else "No checkpoint was saved before it.")
        )
