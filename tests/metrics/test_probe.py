"""Linear probe and kNN on frozen features: sensible accuracies on easy synthetic sets, exact on a hand-made one,
and the same figures through `evaluate_probe` with a model and loaders."""

import torch
from accelerate import Accelerator

from hfgen.config import ProbeSection
from hfgen.metrics.probe import (
    evaluate_probe,
    extract_features,
    knn_accuracy,
    linear_probe_accuracy,
)


def blobs(count, num_classes=4, dim=8, spread=0.5, seed=0):
    """Gaussian clusters around fixed class centres (the same centres for every seed)."""
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % num_classes
    return centres[labels] + spread * torch.randn(count, dim, generator=generator), labels


def test_linear_probe_separates_easy_clusters():
    train_x, train_y = blobs(200, seed=0)
    test_x, test_y = blobs(100, seed=1)
    assert linear_probe_accuracy(train_x, train_y, test_x, test_y) > 0.97


def test_linear_probe_is_at_chance_on_noise_and_needs_linear_structure():
    generator = torch.Generator().manual_seed(0)
    noise_train, noise_test = torch.randn(400, 8, generator=generator), torch.randn(400, 8, generator=generator)
    labels = torch.arange(400) % 4
    assert linear_probe_accuracy(noise_train, labels, noise_test, labels) < 0.4
    # XOR of two coordinates: no linear probe can read it, a kNN can
    x = torch.rand(600, 2, generator=generator) * 2 - 1
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    assert linear_probe_accuracy(x[:400], y[:400], x[400:], y[400:]) < 0.7
    assert knn_accuracy(x[:400], y[:400], x[400:], y[400:], k=5) > 0.85


def test_knn_votes_by_cosine_similarity():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    train_labels = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor([[5.0, 0.2], [0.1, 3.0], [1.0, 1.1]])  # scale does not matter, only the angle
    assert knn_accuracy(train, train_labels, queries, torch.tensor([0, 1, 1]), k=1) == 1.0
    assert knn_accuracy(train, train_labels, queries, torch.tensor([1, 0, 0]), k=1) == 0.0
    assert knn_accuracy(train, train_labels, queries, torch.tensor([0, 1, 1]), k=2, chunk_size=1) == 1.0


def test_evaluate_probe_with_a_model_and_loaders():
    accelerator = Accelerator(cpu=True)
    train_x, train_y = blobs(96, dim=16, seed=0)
    test_x, test_y = blobs(40, dim=16, seed=1)

    def as_images(x):  # features smuggled through uint8 "images" (1, 4, 4) in [0, 255]
        return ((x.sigmoid() * 255).round().to(torch.uint8)).view(-1, 1, 4, 4)

    def loader(x, y):
        rows = [{"pixel_values": image, "labels": label} for image, label in zip(as_images(x), y)]
        return accelerator.prepare(torch.utils.data.DataLoader(rows, batch_size=32))

    def encode(pixel_values):  # (batch, 1, 4, 4) in [0, 1] -> (batch, 16)
        return torch.logit(pixel_values.clamp(1e-3, 1 - 1e-3)).flatten(1)

    features, labels = extract_features(accelerator, encode, loader(test_x, test_y))
    assert features.shape == (40, 16) and torch.equal(labels, test_y)
    results = evaluate_probe(accelerator, encode, loader(train_x, train_y), loader(test_x, test_y), ProbeSection(knn_k=5))
    assert results["linear_probe_accuracy"] > 0.95 and results["knn_accuracy"] > 0.95
    assert results["probe_train_images"] == 96 and results["probe_eval_images"] == 40
