"""Contrastive losses over in-batch negatives gathered from every process, with gradients.

- `info_nce_loss` (van den Oord et al. 2018; SimCSE, Gao et al. 2021; sentence-transformers'
  MultipleNegativesRankingLoss): each anchor must pick its own positive among all positives (and hard
  negatives) of the global batch, by cosine similarity / temperature.
- `nt_xent_loss` (SimCLR, Chen et al. 2020): both views are anchors; each must pick its other view among
  the 2N - 1 other embeddings of the global batch.

Under several processes the candidates are gathered from every rank with `gather_with_grad`, whose
backward sums the gradient every rank's loss sends to a rank's embeddings and hands it back to that
rank. A plain `all_gather` has no backward (the gathered negatives are constants: the loss still falls,
but the encoder gets a fraction of its gradient), and a gather that returns only the local slice of the
gradient drops what the other ranks' losses contribute; both bugs have shipped in well-known libraries.
Each rank's loss is scaled so that DDP's gradient average is exactly the gradient of the mean loss over
the global batch: 2 processes with N examples each train like 1 process with the 2N examples.

Example::

    z1, z2 = encoder(batch), encoder(batch)  # two dropout masks: unsupervised SimCSE
    loss = info_nce_loss(z1, z2, temperature=0.05)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 (ranks may hold different row counts); backward: all-reduce(sum), keep own rows."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        largest = max(sizes)
        padded = tensor.new_zeros((largest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        pieces = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(pieces, padded.contiguous())
        return torch.cat([piece[:size] for piece, size in zip(pieces, sizes)])  # (sum(sizes), ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank's loss -> every rank's rows
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Concatenate `tensor` (rows) from every process, keeping the autograd graph to each rank's own rows.

    Returns (gathered, offset of this rank's rows in it, world size). One process: (tensor, 0, 1).
    """
    world, rank = _world()
    if world == 1:
        return tensor, 0, 1
    local = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(sizes, local)
    sizes = [int(s.item()) for s in sizes]
    return _GatherWithGrad.apply(tensor, sizes, rank), sum(sizes[:rank]), world


def info_nce_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    temperature: float = 0.05,
    gather_across_processes: bool = True,
) -> torch.Tensor:
    """InfoNCE with in-batch negatives: anchor i's target is positive i among all positives (and hard negatives).

    Args:
        anchors: (n, dim) embeddings (normalised here: cosine similarity).
        positives: (n, dim), row i the positive of anchor i.
        negatives: optional (m, dim) hard negatives, extra candidates for every anchor.
        temperature: similarities are divided by it (SimCSE: 0.05).
        gather_across_processes: candidates from every process (with gradients); False: this process's only.

    Returns:
        A scalar, float32. One process: the mean cross-entropy over the anchors. Several: this rank's share,
        scaled so that DDP's average of the ranks' gradients is the gradient of the mean over the global
        batch (and the mean over ranks of the returned values is that global mean).
    """
    anchors = F.normalize(anchors.float(), dim=-1)
    positives = F.normalize(positives.float(), dim=-1)
    candidates = [positives]
    if negatives is not None:
        candidates.append(F.normalize(negatives.float(), dim=-1))
    world, offset, total = 1, 0, anchors.shape[0]
    if gather_across_processes:
        gathered = []
        for index, candidate in enumerate(candidates):
            rows, where, world = gather_with_grad(candidate)
            gathered.append(rows)
            if index == 0:
                offset, total = where, rows.shape[0]
        candidates = gathered
    logits = anchors @ torch.cat(candidates).T / temperature  # (n, all positives [+ all negatives])
    targets = torch.arange(anchors.shape[0], device=anchors.device) + offset
    return F.cross_entropy(logits, targets, reduction="sum") * world / total


def nt_xent_loss(
    view1: torch.Tensor,
    view2: torch.Tensor,
    temperature: float = 0.5,
    gather_across_processes: bool = True,
) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2N embeddings must pick its other view among the 2N - 1 others.

    Args:
        view1, view2: (n, dim) embeddings of two augmentations of the same n examples.
        temperature: SimCLR uses 0.5 (batch 256-4096) to 0.1.
        gather_across_processes: as in `info_nce_loss`.

    Returns:
        A scalar, float32, scaled as in `info_nce_loss`.
    """
    local = F.normalize(torch.cat([view1, view2]).float(), dim=-1)  # (2n, dim): view1 rows, then view2 rows
    n = view1.shape[0]
    world, offset, everything = 1, 0, local
    if gather_across_processes:
        everything, offset, world = gather_with_grad(local)  # rank r's 2n rows at offset
    own = torch.arange(2 * n, device=local.device) + offset
    itself = F.one_hot(own, everything.shape[0]).bool()  # (2n, total)
    logits = (local @ everything.T / temperature).masked_fill(itself, float("-inf"))  # (2n, total)
    targets = own + torch.cat([torch.full((n,), n), torch.full((n,), -n)]).to(own.device)  # the other view
    return F.cross_entropy(logits, targets, reduction="sum") * world / everything.shape[0]
