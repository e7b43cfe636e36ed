"""`method: vae` — variational autoencoder training (Kingma & Welling 2014; beta-VAE) on images.

The model computes its own loss (negative ELBO per image, in nats); this loop adds KL warm-up
(Bowman et al. 2016), and reports the test-split ELBO per image. With `data.label_column` the VAE is
class-conditional (Sohn et al. 2015: the label goes into encoder and decoder), so it generates labelled images.
"""

from __future__ import annotations

import logging

import torch

from ...config import Recipe, RecipeError
from ...data import random_horizontal_flip, save_image_grid, to_float
from ..batches import build_dataloader
from ..engine import Final, Step, TrainingRun
from ..generator_eval import GeneratorEvaluation, final_sample_quality
from ..image_splits import load_image_splits
from ..models import build_model, model_config
from ..optim import backward_and_step, build_optimizer

logger = logging.getLogger("hfgen")

SAMPLE_SEED = 1234


class VAE:
    """`method: vae` on the training engine."""

    name, unit = "vae", "images"

    def __init__(self, recipe: Recipe):
        self.recipe, self.options = recipe, recipe.vae

    def build(self, run: TrainingRun) -> None:
        recipe, train, data = self.recipe, run.train, self.recipe.data
        self.run = run
        config = model_config(recipe)
        self.splits = splits = load_image_splits(recipe, config.image_size, config.num_channels)
        names = splits.label_names
        if data.label_column and names is None:
            raise RecipeError(f"{recipe.source}: data.label_column {data.label_column!r} is not a class-label column")
        overrides = {"num_classes": len(names), "id2label": dict(enumerate(names))} if names else {}
        self.model = build_model(recipe, **overrides)
        self.conditional = self.model.config.num_classes > 0
        if self.conditional and not data.label_column:
            raise RecipeError(f"{recipe.source}: model.num_classes is {self.model.config.num_classes} (class-conditional) but data.label_column is not set")
        if self.conditional and self.model.config.num_classes != len(names):
            raise RecipeError(f"{recipe.source}: model.num_classes is {self.model.config.num_classes} but data.label_column "
                              f"{data.label_column!r} has {len(names)} classes")
        loader = build_dataloader(splits.train, train.batch_size, seed=train.seed, shuffle=True, drop_last=True, num_workers=data.num_workers)
        self.eval_loader = None
        if splits.eval is not None:
            eval_batch = train.eval_batch_size or train.batch_size
            self.eval_loader = run.prepare_eval_loader(build_dataloader(splits.eval, eval_batch, seed=train.seed, shuffle=False, drop_last=False))
            count = min(self.options.num_sample_images // 2, len(splits.eval))
            self.reference = to_float(torch.stack([splits.eval[i]["pixel_values"] for i in range(count)]))
            self.reference_labels = torch.tensor([int(splits.eval[i]["labels"]) for i in range(count)]) if self.conditional else None
        optimizer = build_optimizer(self.model.parameters(), train)
        _, (self.prepared,), (self.optimizer,) = run.prepare(loader, [self.model], [optimizer])
        self.unwrapped = run.accelerator.unwrap_model(self.prepared)
        self.evaluation = GeneratorEvaluation(recipe, run.device)
        self.stateful = {"generator_evaluation": self.evaluation}

    def step(self, batch) -> Step:
        pixel_values = to_float(batch["pixel_values"])  # (batch, channels, height, width) in [0, 1]
        if self.recipe.data.random_flip:
            pixel_values = random_horizontal_flip(pixel_values)
        warmup = self.options.kl_warmup_steps
        kl_weight = min(1.0, (self.run.state.step + 1) / warmup) if warmup else 1.0
        labels = batch["labels"] if self.conditional else None
        out = self.prepared(pixel_values, labels=labels, kl_weight=kl_weight)
        backward_and_step(self.run.accelerator, out.loss, self.prepared, self.optimizer, self.run.train.max_grad_norm)
        return Step(losses={"loss": out.loss}, count=pixel_values.shape[0],
                    extras={"reconstruction_loss": out.reconstruction_loss, "kl": out.kl, "kl_weight": kl_weight})

    def evaluate(self) -> dict:
        metrics = evaluate_elbo(self.run.accelerator, self.prepared, self.eval_loader, self.conditional) if self.eval_loader is not None else {}
        if self.evaluation.enabled and self.run.is_main_process:
            metrics.update(self.evaluation.evaluate(self.unwrapped, self.run.state.step))
        self.run.accelerator.wait_for_everyone()
        return metrics

    def write_samples(self, path) -> None:
        count = self.options.num_sample_images // 2 if self.eval_loader is not None else self.options.num_sample_images
        samples = self.unwrapped.generate(count, seed=SAMPLE_SEED)
        if self.eval_loader is not None:  # top half: test images; then their reconstructions; then prior samples
            with torch.no_grad():
                labels = self.reference_labels.to(self.run.device) if self.conditional else None
                recon = self.unwrapped.reconstruct(self.reference.to(self.run.device), labels).float().cpu()
            samples = torch.cat([self.reference, recon, samples.float().cpu()])
        save_image_grid(samples, path, nrow=8)

    def finish(self, results: dict) -> Final:
        if self.eval_loader is not None:
            results.update(evaluate_elbo(self.run.accelerator, self.prepared, self.eval_loader, self.conditional))
            logger.info("test ELBO per image: %.2f nats", results["eval_elbo"])
        if self.splits.holdout is not None:
            results["eval_holdout"] = self.splits.holdout
        if self.run.is_main_process:
            results.update(final_sample_quality(self.evaluation, self.unwrapped, self.run.state.step))
        return Final(model=self.prepared, card_family="vae")


@torch.no_grad()
def evaluate_elbo(accelerator, model, loader, conditional: bool = False) -> dict:
    """Mean per-image ELBO, reconstruction term and KL (nats) over the whole eval split, exact
    under several processes (`gather_for_metrics` drops the padding duplicates). One posterior
    sample per image, from a fixed seed, so the figure is reproducible."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64)  # reconstruction NLL, KL
    count = 0
    noise = torch.Generator(device=accelerator.device).manual_seed(0)
    for batch in loader:
        pixel_values = to_float(batch["pixel_values"])
        labels = batch["labels"] if conditional else None
        out = accelerator.unwrap_model(model)(pixel_values, labels=labels, kl_weight=1.0, generator=noise, reduction="none")
        per_image = torch.stack([out.reconstruction_loss, out.kl], dim=1).float()  # (batch, 2)
        per_image = accelerator.gather_for_metrics(per_image).double().cpu()
        sums += per_image.sum(0)
        count += per_image.shape[0]
    model.train(was_training)
    recon, kl = (sums / max(1, count)).tolist()
    return {"eval_elbo": -(recon + kl), "eval_reconstruction_nll": recon, "eval_kl": kl, "eval_images": count}
