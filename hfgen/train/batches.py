"""The batches of a run: a seeded permutation per epoch, the loader over it, the run's length in optimizer steps,
and the epoch/batch iteration that resumes mid-epoch."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from accelerate import Accelerator
from torch.utils.data import BatchSampler, DataLoader, Sampler

from ..config import Recipe, RecipeError
from .checkpoint import TrainState


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
    return sampled_loader(dataset, EpochSampler(len(dataset), seed=seed, shuffle=shuffle), batch_size, drop_last, seed,
                          collate_fn=collate_fn, num_workers=num_workers)


def sampled_loader(dataset, sampler, batch_size: int, drop_last: bool, seed: int, collate_fn=None, num_workers: int = 0) -> DataLoader:
    """The one way hfgen builds a loader: batches of `sampler`'s indices, and the loader's own seeded torch.Generator.
    Every new iterator (each epoch, and the one a resumed run starts) draws its base seed from that generator;
    without it the draw comes from the global RNG and shifts the noise stream of a resumed run."""
    return DataLoader(
        dataset,
        batch_sampler=BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last),
        num_workers=num_workers,
        collate_fn=collate_fn,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def require_max_steps_when_streaming(recipe: Recipe) -> None:
    """A streamed dataset has no length: the run's length must come from `train.max_steps`."""
    if recipe.data.streaming and recipe.train.max_steps is None:
        raise RecipeError(f"{recipe.source}: train.max_steps: a streamed dataset has no known length; set train.max_steps")


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
