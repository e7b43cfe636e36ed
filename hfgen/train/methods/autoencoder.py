"""`method: autoencoder` — pretraining an image encoder by reconstruction (optionally sparse, Ng 2011, or
denoising, Vincent et al. 2008), scored by a linear probe and kNN on its frozen features.

The model (`ImageAutoencoderModel`) computes its own loss; this loop logs it, writes PNG grids of eval images and
their reconstructions, probes the encoder every `train.eval_every` steps and at the end, and saves the whole
autoencoder: `ImageEncoderForImageClassification.from_pretrained(output_dir)` then takes its encoder.
"""

from __future__ import annotations

import logging

import torch
from transformers import AutoModelForMaskedImageModeling

from ...config import Recipe
from ...data import random_horizontal_flip, save_image_grid, to_float
from ..batches import build_dataloader
from ..engine import Final, Step, TrainingRun
from ..encoder_probe import EncoderProbe
from ..image_splits import image_processor_files, load_image_splits
from ..models import build_model
from ..optim import backward_and_step, build_optimizer

logger = logging.getLogger("hfgen")

CORRUPTION_SEED = 1234  # the corrupted inputs shown in the sample grids


class Autoencoder:
    """`method: autoencoder` on the training engine."""

    name, unit = "autoencoder", "images"

    def __init__(self, recipe: Recipe):
        self.recipe, self.options = recipe, recipe.autoencoder

    def build(self, run: TrainingRun) -> None:
        recipe, options, train, data = self.recipe, self.options, run.train, self.recipe.data
        self.run = run
        model = build_model(recipe, auto_class=AutoModelForMaskedImageModeling)  # -> ImageAutoencoderModel
        self.config = config = model.config
        self.splits = splits = load_image_splits(recipe, config.image_size, config.num_channels)
        loader = build_dataloader(splits.train, train.batch_size, seed=train.seed, shuffle=True, drop_last=True, num_workers=data.num_workers)
        self.eval_batch = train.eval_batch_size or train.batch_size
        self.eval_loader = None
        if splits.eval is not None:
            self.eval_loader = run.prepare_eval_loader(build_dataloader(splits.eval, self.eval_batch, seed=train.seed, shuffle=False, drop_last=False))
            self.reference = to_float(splits.eval.pixels[: options.num_sample_images])  # (n, C, H, W) in [0, 1]
        self.probe = EncoderProbe(run.accelerator, splits, options.probe, self.eval_batch, train.seed)
        optimizer = build_optimizer(model.parameters(), train)
        _, (self.model,), (self.optimizer,) = run.prepare(loader, [model], [optimizer])
        self.unwrapped = run.accelerator.unwrap_model(self.model)

    def step(self, batch) -> Step:
        pixel_values = to_float(batch["pixel_values"])  # (batch, channels, height, width) in [0, 1]
        if self.recipe.data.random_flip:
            pixel_values = random_horizontal_flip(pixel_values)
        out = self.model(pixel_values)
        backward_and_step(self.run.accelerator, out.loss, self.model, self.optimizer, self.run.train.max_grad_norm)
        extras = {"reconstruction_loss": out.reconstruction_loss, "sparsity_loss": out.sparsity_loss,
                  "mean_code_activation": out.code.detach().float().mean()}
        return Step(losses={"loss": out.loss}, count=pixel_values.shape[0], extras=extras)

    def evaluate(self, final: bool = False) -> dict:
        results = {}
        if self.eval_loader is not None:
            results.update(evaluate_reconstruction(self.run.accelerator, self.model, self.eval_loader))
        results.update(self.probe.evaluate(self.model, lambda x: self.unwrapped.image_encoder(x).pooler_output, final))
        return results

    def write_samples(self, path) -> None:
        if self.eval_loader is None:
            return
        device, rows = self.run.device, [self.reference]
        if self.config.denoising != "none":  # what the encoder saw
            rows.append(self.unwrapped.corrupt(self.reference.to(device), torch.Generator(device=device).manual_seed(CORRUPTION_SEED)).cpu())
        with torch.no_grad():
            rows.append(self.unwrapped.reconstruct(self.reference.to(device)).cpu())
        save_image_grid(torch.cat(rows), path, nrow=min(16, len(self.reference)))

    def finish(self, results: dict) -> Final:
        results.update(self.evaluate(final=True))
        results["unreadable_images_skipped"] = self.splits.unreadable_skipped
        if self.splits.holdout is not None:
            results["eval_holdout"] = self.splits.holdout
        return Final(model=self.model, files=image_processor_files(self.config), card_family="image_autoencoder",
                     pipeline_tag="image-feature-extraction")


@torch.no_grad()
def evaluate_reconstruction(accelerator, model, loader) -> dict:
    """Mean per-pixel reconstruction loss of clean eval images (no corruption), over the whole split."""
    total, count = torch.zeros((), dtype=torch.float64), 0
    with _frozen(model):
        for batch in loader:
            out = accelerator.unwrap_model(model)(to_float(batch["pixel_values"]), corrupt=False, reduction="none")
            per_image = accelerator.gather_for_metrics(out.reconstruction_loss.float()).double().cpu()
            total += per_image.sum()
            count += per_image.shape[0]
    return {"eval_reconstruction_loss": (total / max(1, count)).item(), "eval_images": count}


class _frozen:
    """Eval mode (BatchNorm running statistics, no dropout) for the block; the previous mode after."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)
