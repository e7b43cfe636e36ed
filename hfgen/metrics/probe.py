"""Is a pretrained encoder any good? Two standard frozen-feature scores, used by every image pretraining method.

- **Linear probe**: multinomial logistic regression fitted (L-BFGS, full batch, L2 penalty) on standardized features
  of labelled training images, accuracy on the eval split (the protocol of SimCLR, Chen et al. 2020, section 4).
- **kNN**: each eval image takes the classes of its k most cosine-similar training images, weighted by
  exp(similarity / T) (Wu et al. 2018, as in DINO); accuracy on the eval split.

Both are deterministic for given features. `evaluate_probe` extracts features under several processes (each process
encodes its shard; `gather_for_metrics` joins them) and fits on the main process.

    >>> results = evaluate_probe(accelerator, lambda x: encoder(x).pooler_output, train_loader, eval_loader, ProbeSection())
    >>> results["linear_probe_accuracy"], results["knn_accuracy"]
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..config import ProbeSection


@torch.no_grad()
def extract_features(accelerator, encode: Callable[[torch.Tensor], torch.Tensor], loader) -> tuple[torch.Tensor, torch.Tensor]:
    """(features float32 (N, D), labels int64 (N,)) of a prepared loader of `{"pixel_values": uint8, "labels"}`
    batches, on CPU, each example once (gathered over processes). `encode` maps float images in [0, 1] to
    features; the caller puts the model in eval mode."""
    features, labels = [], []
    for batch in loader:
        pixel_values = batch["pixel_values"].float() / 255.0  # (batch, channels, height, width) in [0, 1]
        out = encode(pixel_values).float()  # (batch, hidden)
        out, batch_labels = accelerator.gather_for_metrics((out, batch["labels"]))
        features.append(out.cpu())
        labels.append(batch_labels.cpu())
    return torch.cat(features), torch.cat(labels)


def linear_probe_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    eval_features: torch.Tensor,
    eval_labels: torch.Tensor,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
) -> float:
    """Accuracy on the eval set of a logistic regression fitted on the training set.

    Features are standardized with the training set's mean and std; the loss is mean cross-entropy plus
    `weight_decay / 2 * ||W||^2` (bias not penalized), minimized by L-BFGS with a strong-Wolfe line search from
    zero weights.
    """
    mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    x_train = ((train_features - mean) / std).float()  # (N, D)
    x_eval = ((eval_features - mean) / std).float()
    num_classes = int(max(train_labels.max(), eval_labels.max())) + 1
    weight = torch.zeros(x_train.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x_train @ weight + bias, train_labels) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predictions = (x_eval @ weight + bias).argmax(dim=1)
    return (predictions == eval_labels).double().mean().item()


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    eval_features: torch.Tensor,
    eval_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 512,
) -> float:
    """Accuracy of a weighted kNN vote on cosine similarity (each neighbour votes exp(similarity / temperature))."""
    train = F.normalize(train_features.float(), dim=1)
    num_classes = int(max(train_labels.max(), eval_labels.max())) + 1
    k = min(k, train.shape[0])
    correct = 0
    for start in range(0, eval_features.shape[0], chunk_size):  # (chunk, N) similarities at a time
        query = F.normalize(eval_features[start : start + chunk_size].float(), dim=1)
        similarity, index = (query @ train.T).topk(k, dim=1)  # (chunk, k)
        votes = torch.zeros(query.shape[0], num_classes)
        votes.scatter_add_(1, train_labels[index], (similarity / temperature).exp())
        correct += (votes.argmax(dim=1) == eval_labels[start : start + chunk_size]).sum().item()
    return correct / max(1, eval_features.shape[0])


def evaluate_probe(accelerator, encode: Callable[[torch.Tensor], torch.Tensor], train_loader, eval_loader, options: ProbeSection) -> dict:
    """Linear-probe and kNN accuracy of `encode` (float images in [0, 1] -> features), fitted on `train_loader` and
    scored on `eval_loader` (prepared loaders of labelled uint8 images). Every process must call it (features are
    gathered); the scores are computed on the main process, others get `{}`."""
    started = time.perf_counter()
    train_features, train_labels = extract_features(accelerator, encode, train_loader)
    eval_features, eval_labels = extract_features(accelerator, encode, eval_loader)
    if not accelerator.is_main_process:
        return {}
    return {
        "linear_probe_accuracy": linear_probe_accuracy(
            train_features, train_labels, eval_features, eval_labels, options.weight_decay, options.max_iter
        ),
        "knn_accuracy": knn_accuracy(train_features, train_labels, eval_features, eval_labels, options.knn_k, options.knn_temperature),
        "probe_train_images": train_features.shape[0],
        "probe_eval_images": eval_features.shape[0],
        "probe_seconds": time.perf_counter() - started,
    }


__all__ = ["evaluate_probe", "extract_features", "knn_accuracy", "linear_probe_accuracy"]
