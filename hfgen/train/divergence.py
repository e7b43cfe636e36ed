"""Stopping a run whose losses or weights stop being finite, and naming where to continue from.

Checks run at the log cadence and before every checkpoint (one host sync each), never per micro-batch; a checkpoint
is written only after both pass, so every checkpoint on disk holds finite weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .sharding import local_tensor

logger = logging.getLogger("hfgen")


class TrainingDiverged(FloatingPointError):
    """A loss or a weight became NaN or infinite; the message names the step and the newest finite checkpoint."""


def check_finite(accelerator, losses: dict[str, torch.Tensor], step: int, output_dir) -> None:
    """Stop the run (on every process together) when any of `losses` (means since the last check) is NaN/inf."""
    if not losses:
        return
    bad = torch.stack([(~torch.isfinite(v.detach().float())).any().float() for v in losses.values()]).to(accelerator.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    flags = bad.tolist()  # the host sync of this check
    if any(flags):
        names = [name for name, flag in zip(losses, flags) if flag]
        raise TrainingDiverged(f"loss {', '.join(names)} is not finite at step {step}; stopping. " + resume_advice(output_dir))


def check_weights_finite(accelerator, models, step: int, output_dir) -> None:
    """Stop the run when any floating-point parameter or buffer of `models` is NaN/inf."""
    bad = torch.zeros((), device=accelerator.device)
    for model in models:
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                bad = bad + (~torch.isfinite(local_tensor(tensor.detach()))).any().float()  # FSDP: this process's shard
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if bad.item():
        raise TrainingDiverged(f"model weights are not finite after step {step}; stopping without a checkpoint. " + resume_advice(output_dir))


def resume_advice(output_dir) -> str:
    """Where a diverged run can continue from: the newest checkpoint whose weights are all finite."""
    from .checkpoint import list_checkpoints

    for checkpoint in reversed(list_checkpoints(output_dir)):
        if checkpoint_weights_finite(checkpoint):
            return (f"The newest checkpoint with finite weights is {checkpoint}: train.resume: auto continues from it "
                    "at the recipe's current train.learning_rate, so lower it (or set train.max_grad_norm) and run again.")
    return "No checkpoint with finite weights was saved before it."


def checkpoint_weights_finite(checkpoint: Path) -> bool:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        for path in sorted(Path(checkpoint).glob("model*.safetensors")):
            if not all(torch.isfinite(t).all() for t in load_file(path).values() if t.is_floating_point()):
                return False
    except (SafetensorError, OSError):
        return False
    return True
