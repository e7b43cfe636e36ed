"""Batch-level transforms for text models: BERT's dynamic masking."""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # label of positions that are not predicted (torch's cross_entropy default)


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_token_ids: list[int] | tuple[int, ...] | torch.Tensor,
    mask_rate: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking (Devlin et al. 2019), drawn afresh for every batch ("dynamic", RoBERTa).

    Each non-special token is chosen for prediction with probability `mask_rate`; a chosen token is
    replaced by `[MASK]` 80% of the time, by a random token 10%, and kept 10%.

    Args:
        input_ids: (batch, length) token ids; not modified.
        mask_token_id: id of `[MASK]`.
        vocab_size: random replacements are drawn from [0, vocab_size).
        special_token_ids: ids never chosen ([CLS], [SEP], [PAD], ...).
        mask_rate: share of tokens to predict: 0.15 (BERT) or 0.3 (MosaicBERT).
        generator: a seeded generator for reproducible masks (evaluation); None uses the global RNG,
            whose state the training checkpoints save.

    Returns:
        (masked input_ids, labels): labels hold the original id at chosen positions and -100 elsewhere.

    Example:
        >>> ids = torch.tensor([[101, 7592, 2088, 102]])
        >>> masked, labels = mask_tokens(ids, mask_token_id=103, vocab_size=30522, special_token_ids=[101, 102])
    """
    if not 0.0 < mask_rate < 1.0:
        raise ValueError(f"mask_rate must be between 0 and 1 (exclusive), got {mask_rate}")
    device = input_ids.device
    special = torch.as_tensor(special_token_ids, device=device)
    probability = torch.full(input_ids.shape, mask_rate, device=device)
    probability.masked_fill_(torch.isin(input_ids, special), 0.0)
    chosen = torch.bernoulli(probability, generator=generator).bool()
    labels = torch.where(chosen, input_ids, IGNORE_INDEX)

    # one uniform draw decides the fate of each chosen token: [0, 0.8) mask, [0.8, 0.9) random, [0.9, 1) keep
    fate = torch.rand(input_ids.shape, device=device, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, device=device, generator=generator)
    masked = torch.where(chosen & (fate < 0.8), mask_token_id, input_ids)
    masked = torch.where(chosen & (fate >= 0.8) & (fate < 0.9), random_ids, masked)
    return masked, labels
