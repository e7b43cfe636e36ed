"""Optimizers and learning-rate schedules built from `recipe.train`."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..config import TrainSection


def build_optimizer(
    params: Iterable[torch.nn.Parameter] | list[dict],
    train: TrainSection,
    learning_rate: float | None = None,
    betas: tuple[float, float] | None = None,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW with the recipe's learning rate, betas, epsilon and weight decay.

    Pass parameter groups to exempt biases/norms from decay or to give layers their own rate.
    ``fused=True`` takes torch's fused kernel: on CPU it is ~4x faster than the for-loop for a
    22M-parameter model (measured: 0.04 s vs 0.17 s per step on 2 cores), which matters when the
    optimizer step is a tenth of the step time (fine-tuning a pretrained encoder).
    """
    return torch.optim.AdamW(
        params,
        lr=learning_rate if learning_rate is not None else train.learning_rate,
        betas=betas or (train.adam_beta1, train.adam_beta2),
        eps=train.adam_epsilon,
        weight_decay=train.weight_decay,
        # foreach is only faster on GPU (on CPU the for-loop is as fast); fused is opt-in, see above
        foreach=None,
        fused=fused,
    )


def backward_and_step(accelerator, loss: torch.Tensor, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      max_grad_norm: float | None) -> None:
    """One micro-batch's update inside ``accelerator.accumulate``: backward (loss scaled for accumulation and fp16
    by Accelerate), then, on the micro-batch that syncs, ``module``'s gradients clipped to ``max_grad_norm``
    (None: no clipping); the optimizer steps and clears its gradients (Accelerate's prepared optimizer only
    really steps when gradients sync)."""
    accelerator.backward(loss)
    if accelerator.sync_gradients and max_grad_norm is not None:
        accelerator.clip_grad_norm_(module.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSection, num_training_steps: int) -> LambdaLR:
    """Linear warm-up over `train.warmup_steps`, then constant, linear or cosine decay to 0.

    `one_cycle` is Smith's one-cycle shape as used by "Cramming": linear up to the peak at
    `warmup_steps` (default: half the run), then linear down to 0.
    """
    warmup = train.warmup_steps
    total = max(1, num_training_steps)
    kind = train.lr_scheduler
    if kind == "one_cycle" and warmup == 0:
        warmup = total // 2

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind in ("linear", "one_cycle"):
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine

    return LambdaLR(optimizer, factor)
