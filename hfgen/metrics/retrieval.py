"""Retrieval quality of embeddings without any Hub data: same-label recall@k.

Each item queries all the others by cosine similarity; recall@k is the share of queries with at least one item of
their own label among their k nearest neighbours (the Recall@K of metric learning, e.g. Song et al. 2016 on Stanford
Online Products). Also the mean share of same-label items among the 10 nearest (precision@10). Chance level for
recall@1 is about the share of the query's class (1/20 on 20newsgroups).

    >>> same_label_recall_at_k(model.encode(texts), labels, ks=[1, 10])
    {'recall@1': 0.61, 'recall@10': 0.93, 'precision@10': 0.52}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def same_label_recall_at_k(embeddings: torch.Tensor, labels: torch.Tensor | list[int], ks=(1, 10), chunk: int = 1024) -> dict:
    """Same-label recall@k for every k in `ks` (and precision@10) of `embeddings` (n, dim) with integer `labels` (n,)."""
    embeddings = F.normalize(torch.as_tensor(embeddings).float(), dim=-1)
    labels = torch.as_tensor(labels)
    n, depth = len(embeddings), min(max([*ks, 10]), len(embeddings) - 1)
    hits = {k: 0 for k in ks}
    same_in_10 = 0.0
    for start in range(0, n, chunk):  # (chunk, n) similarities at a time: memory stays O(chunk * n)
        similarity = embeddings[start : start + chunk] @ embeddings.T
        rows = torch.arange(similarity.shape[0])
        similarity[rows, rows + start] = float("-inf")  # not itself
        neighbours = similarity.topk(depth, dim=1).indices  # (chunk, depth), nearest first
        same = labels[neighbours] == labels[start : start + chunk, None]
        for k in ks:
            hits[k] += same[:, :k].any(dim=1).sum().item()
        same_in_10 += same[:, :10].float().mean(dim=1).sum().item()
    return {**{f"recall@{k}": hits[k] / n for k in ks}, "precision@10": same_in_10 / n}
