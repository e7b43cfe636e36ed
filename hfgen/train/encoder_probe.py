"""The linear probe + kNN that score an image encoder during and after pretraining (autoencoder, SimCLR), on frozen
features of the labelled training and eval images (`hfgen.metrics.probe`)."""

from __future__ import annotations

import logging

from ..metrics.probe import evaluate_probe
from .image_splits import probe_loaders

logger = logging.getLogger("hfgen")


class EncoderProbe:
    """Probe loaders built once (none when the data has no labels or no eval split); `evaluate` scores an encoder."""

    def __init__(self, accelerator, splits, options, batch_size: int, seed: int):
        self.accelerator, self.splits, self.options, self.batch_size, self.seed = accelerator, splits, options, batch_size, seed
        self.loaders = probe_loaders(accelerator, splits, options, batch_size, seed)
        if self.loaders is None:
            logger.info("No linear probe / kNN: they need data.label_column and data.eval_split.")

    def evaluate(self, model, encode, final: bool = False) -> dict:
        """Probe `encode(pixel_values) -> (batch, features)` with `model` in eval mode (its mode is restored);
        `final` probes with `probe.final_train_samples` training images. Accuracies get an `eval_` prefix."""
        loaders = probe_loaders(self.accelerator, self.splits, self.options, self.batch_size, self.seed, final=True) if final else self.loaders
        if loaders is None:
            return {}
        was_training = model.training
        model.eval()
        try:
            results = evaluate_probe(self.accelerator, encode, *loaders, self.options)
        finally:
            model.train(was_training)
        results = {f"eval_{k}" if k.endswith("accuracy") else k: v for k, v in results.items()}
        if final and "eval_linear_probe_accuracy" in results:
            logger.info("linear probe accuracy %.4f, kNN accuracy %.4f", results["eval_linear_probe_accuracy"], results["eval_knn_accuracy"])
        return results
