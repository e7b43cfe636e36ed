"""BatchNorm over the global batch of every process (`train.sync_batchnorm`).

Under DDP each process normalises with the statistics of its own slice of the batch, so 2 processes x 128 images
train a SimCLR encoder as if its batch were 128, not 256: known to cost accuracy for contrastive learning (SimCLR,
Chen et al. 2020, synchronise BN for this reason). `convert_sync_batchnorm` replaces every BatchNorm of a model
before it is wrapped:

- on CUDA (and other devices torch's `nn.SyncBatchNorm` runs on) by torch's own `nn.SyncBatchNorm`;
- elsewhere (CPU, gloo: torch's refuses CPU tensors) by `CrossProcessBatchNorm`: the per-channel sum, sum of
  squares and count are all-reduced (differentiably, so the gradient flows through the global statistics as
  in one process), then normalised as `nn.BatchNorm` does; running statistics take the global batch's mean and
  unbiased variance. Its `state_dict` is a BatchNorm's, so saved folders are unchanged.

In evaluation mode, or with one process, both are plain BatchNorm.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

SYNC_DEVICE_TYPES = ("cuda", "hpu", "xpu")  # where torch's nn.SyncBatchNorm runs


class _LocalBatchNorm(_BatchNorm):
    """A BatchNorm of any input rank that never synchronises (what `local_batchnorm` turns synced ones into)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")


class CrossProcessBatchNorm(_LocalBatchNorm):
    """BatchNorm (1d/2d/3d inputs) whose training statistics are those of the batch of every process."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]  # every axis but the channels
        x = input.float()
        count = torch.tensor([x.numel() / channels], dtype=torch.float32, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))  # (2C + 1,), summed over processes
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels : 2 * channels] / total - mean * mean).clamp(min=0)  # biased, as BatchNorm normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                unbiased = var.detach() * total / (total - 1).clamp(min=1)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def convert_sync_batchnorm(model: nn.Module, device_type: str) -> tuple[nn.Module, int]:
    """`model` with every BatchNorm computing global-batch statistics (torch's `SyncBatchNorm` on `SYNC_DEVICE_TYPES`,
    else `CrossProcessBatchNorm`), and how many were converted. Weights, buffers and their names are kept."""
    if device_type in SYNC_DEVICE_TYPES:
        count = sum(isinstance(m, _BatchNorm) for m in model.modules())
        return nn.SyncBatchNorm.convert_sync_batchnorm(model), count
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm) and not isinstance(child, CrossProcessBatchNorm):
                replacement = CrossProcessBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats,
                                                    device=next(iter(child.state_dict().values()), torch.empty(0)).device)
                replacement.load_state_dict(child.state_dict())
                replacement.train(child.training)
                if child.affine:  # the same Parameter objects: optimizers built before still hold them
                    replacement.weight, replacement.bias = child.weight, child.bias
                setattr(parent, name, replacement)
                count += 1
    return model, count


@contextlib.contextmanager
def local_batchnorm(model: nn.Module):
    """Within the block, the synchronised BatchNorms of `model` use this process's batch alone: for training-mode
    forwards that run on one process only (e.g. the GAN's recomputation of BatchNorm statistics for its EMA weights
    on the main process), where a collective would wait forever for the other processes."""
    swapped = [(m, type(m)) for m in model.modules() if isinstance(m, (CrossProcessBatchNorm, nn.SyncBatchNorm))]
    for module, _ in swapped:
        module.__class__ = _LocalBatchNorm
    try:
        yield model
    finally:
        for module, cls in swapped:
            module.__class__ = cls
