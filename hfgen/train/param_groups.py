"""Optimizer parameter groups for fine-tuning: no weight decay on biases and norms, and an optional
layer-wise learning-rate decay (ELECTRA, Clark et al. 2020; BEiT): the head trains at the full
rate, the layer below at ``rate * decay``, the one below that at ``rate * decay**2``, ... down to
the embeddings, so the general features of the lower layers move least.

Layers are found by name: ``...layer.<i>.`` / ``layers.<i>.`` / ``blocks.<i>.`` (BERT, ViT and
most encoders), embeddings by ``embed`` in the name; everything else (pooler, final norm,
classifier head) sits above the top layer.
"""

from __future__ import annotations

import re

import torch

_LAYER_RE = re.compile(r"(?:^|\.)(?:layer|layers|blocks|block|h)\.(\d+)\.")


def _no_decay(name: str, parameter: torch.nn.Parameter) -> bool:
    return parameter.ndim < 2 or "norm" in name.lower() or name.endswith(".bias")


def layer_depths(model: torch.nn.Module) -> tuple[dict[str, int], int]:
    """Depth of every trainable parameter (0: embeddings, i + 1: layer i, top: everything above) and the top depth."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    layer_of = {name: int(m.group(1)) for name in names if (m := _LAYER_RE.search(name))}
    top = (max(layer_of.values()) + 2) if layer_of else 1
    depths = {}
    for name in names:
        if name in layer_of:
            depths[name] = layer_of[name] + 1
        elif "embed" in name.lower():
            depths[name] = 0
        else:
            depths[name] = top
    return depths, top


def parameter_groups(
    model: torch.nn.Module, learning_rate: float, weight_decay: float, layer_lr_decay: float | None = None
) -> list[dict]:
    """AdamW parameter groups: (depth, decayed or not) -> {"params", "lr", "weight_decay"}.

    With ``layer_lr_decay`` None every group has ``learning_rate``; otherwise a parameter at depth
    d of a model whose top is T trains at ``learning_rate * layer_lr_decay ** (T - d)``.
    """
    depths, top = layer_depths(model)
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        depth = depths[name] if layer_lr_decay is not None else top
        decayed = not _no_decay(name, parameter)
        group = groups.setdefault(
            (depth, decayed),
            {
                "params": [],
                "lr": learning_rate * (layer_lr_decay ** (top - depth) if layer_lr_decay is not None else 1.0),
                "weight_decay": weight_decay if decayed else 0.0,
            },
        )
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]
