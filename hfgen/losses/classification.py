"""The loss of a classification or regression head, for any modality.

- ``single_label``: cross-entropy over classes, optionally weighted per class;
- ``multi_label``: binary cross-entropy per label (sigmoid), optionally with ``pos_weight`` per label;
- ``regression``: mean squared error of one output;
- ``token``: cross-entropy per token, positions labelled -100 ignored, optionally weighted per class.

Logits may be bf16 under autocast; the loss is computed in float32.

Example::

    logits = model(**inputs).logits  # (batch, classes)
    loss = classification_loss(logits, labels, "single_label", class_weights=weights)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, task: str, class_weights: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Mean loss of a batch (``reduction="mean"``), or per example (``"none"``: (batch,); for tokens
    the sum over an example's scored tokens, so a split's loss is total / scored tokens).

    Args:
        logits: (batch, classes), (batch, 1) for regression, (batch, length, classes) for tokens.
        labels: (batch,) int64 ids; (batch, labels) multi-hot float; (batch,) float targets;
            (batch, length) int64 tag ids with -100 on unscored positions.
        task: ``single_label``, ``multi_label``, ``regression`` or ``token``.
        class_weights: (classes,) weights (``pos_weight`` for multi_label); None for none.
    """
    logits = logits.float()
    if task == "single_label":
        return F.cross_entropy(logits, labels, weight=class_weights, reduction=reduction)
    if task == "multi_label":
        loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=class_weights, reduction="none")
        return loss.mean() if reduction == "mean" else loss.mean(-1)
    if task == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype), reduction=reduction)
    if task == "token":
        batch, length, classes = logits.shape
        flat = F.cross_entropy(
            logits.reshape(batch * length, classes), labels.reshape(-1), weight=class_weights,
            ignore_index=IGNORE_INDEX, reduction="mean" if reduction == "mean" else "none",
        )  # fmt: skip
        return flat if reduction == "mean" else flat.view(batch, length).sum(-1)
    raise ValueError(f"unknown task {task!r}; expected single_label, multi_label, regression or token")
