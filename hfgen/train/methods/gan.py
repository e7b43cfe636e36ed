"""`method: gan` — DCGAN training (Radford et al. 2015) on an image dataset.

Generator and discriminator are prepared separately for DDP (each gets its own gradient sync),
trained with separate Adam optimizers, alternating one discriminator and one generator update
per batch; a generator EMA is kept beside them, and the saved generator is the EMA one, with
BatchNorm statistics recomputed for the EMA weights ("standing statistics", Brock et al. 2019).
"""

from __future__ import annotations

import contextlib
import copy
import logging

import torch

from ...config import Recipe, RecipeError
from ...data import normalize_to_symmetric, random_horizontal_flip, save_image_grid, to_float
from ...losses.adversarial import discriminator_loss, generator_loss
from ..batches import build_dataloader
from ..engine import Final, Step, TrainingRun
from ..generator_eval import GeneratorEvaluation, final_sample_quality
from ..image_splits import load_image_splits
from ..models import build_model, model_config
from ..optim import backward_and_step, build_optimizer
from ..sync_batchnorm import local_batchnorm

logger = logging.getLogger("hfgen")

SAMPLE_SEED = 1234  # fixed latents for the PNG grids, so grids are comparable across steps


class GAN:
    """`method: gan` on the training engine."""

    name, unit = "gan", "images"
    unshardable = "FSDP accepts one model per Accelerator and a GAN trains two (generator and discriminator)"

    def __init__(self, recipe: Recipe):
        self.recipe, self.options = recipe, recipe.gan

    def build(self, run: TrainingRun) -> None:
        recipe, options, train, data = self.recipe, self.options, run.train, self.recipe.data
        self.run = run
        config = model_config(recipe)
        splits = load_image_splits(recipe, config.image_size, config.num_channels, eval_split=False)
        names = splits.label_names
        if data.label_column and names is None:
            raise RecipeError(f"{recipe.source}: data.label_column {data.label_column!r} is not a class-label column")
        overrides = {"num_classes": len(names), "id2label": dict(enumerate(names))} if names else {}
        self.model = model = build_model(recipe, **overrides)
        self.config = config = model.config
        if config.num_classes and not data.label_column:
            raise RecipeError(f"{recipe.source}: model.num_classes is {config.num_classes} (class-conditional) but data.label_column is not set")
        loader = build_dataloader(splits.train, train.batch_size, seed=train.seed, shuffle=True, drop_last=True, num_workers=data.num_workers)
        betas = (train.adam_beta1, train.adam_beta2)
        g_opt = build_optimizer(model.generator.parameters(), train, options.generator_learning_rate, betas)
        d_opt = build_optimizer(model.discriminator.parameters(), train, options.discriminator_learning_rate, betas)
        # prepared one by one: each network gets its own DDP wrapper and gradient sync
        _, (self.generator, self.discriminator), (self.g_opt, self.d_opt) = run.prepare(
            loader, [model.generator, model.discriminator], [g_opt, d_opt]
        )
        self.stateful = {}
        self.ema = None
        if options.ema_decay is not None:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(model.generator.parameters(), decay=options.ema_decay)
            self.ema.to(run.device)
            self.stateful["ema"] = self.ema
        self.evaluation = GeneratorEvaluation(recipe, run.device)
        self.stateful["generator_evaluation"] = self.evaluation
        self.sample_labels = _sample_labels(config, options.num_sample_images)
        self.discriminator_module = run.accelerator.unwrap_model(self.discriminator)

    def step(self, batch) -> Step:
        accelerator, options, train = self.run.accelerator, self.options, self.run.train
        real = normalize_to_symmetric(to_float(batch["pixel_values"]))  # (batch, channels, height, width) in [-1, 1]
        if self.recipe.data.random_flip:
            real = random_horizontal_flip(real)
        labels = batch.get("labels") if self.config.num_classes else None
        latents = torch.randn(real.shape[0], self.config.latent_dim, device=real.device)
        # discriminator update: real vs (detached) fake
        with accelerator.autocast():
            fake = self.generator(latents, labels)
            d_loss = discriminator_loss(self.discriminator(real, labels), self.discriminator(fake.detach(), labels), options.loss)
        backward_and_step(accelerator, d_loss, self.discriminator, self.d_opt, train.max_grad_norm)
        # generator update through the (frozen) discriminator; the unwrapped module keeps this backward out of
        # the discriminator's DDP gradient sync
        self.discriminator_module.requires_grad_(False)
        with accelerator.autocast():
            g_loss = generator_loss(self.discriminator_module(fake, labels), options.loss)
        backward_and_step(accelerator, g_loss, self.generator, self.g_opt, train.max_grad_norm)  # g_opt holds no D weights
        self.discriminator_module.requires_grad_(True)
        return Step(losses={"d_loss": d_loss, "g_loss": g_loss}, count=real.shape[0])

    def after_optimizer_step(self) -> None:
        if self.ema is not None:
            self.ema.step(self.model.generator.parameters())

    def evaluate(self) -> dict:
        metrics = {}
        if self.evaluation.enabled and self.run.is_main_process:
            with generator_for_sampling(self.model, self.ema, self.run.device):
                metrics = self.evaluation.evaluate(self.model, self.run.state.step)
        self.run.accelerator.wait_for_everyone()
        return metrics

    def write_samples(self, path) -> None:
        with generator_for_sampling(self.model, self.ema, self.run.device):
            grid = self.model.generate(self.options.num_sample_images, seed=SAMPLE_SEED, labels=self.sample_labels)
        save_image_grid(grid, path)

    def finish(self, results: dict) -> Final:
        final = self.model
        if self.run.is_main_process:
            with generator_for_sampling(self.model, self.ema, self.run.device):
                results.update(final_sample_quality(self.evaluation, self.model, self.run.state.step))
                final = copy.deepcopy(self.model).to("cpu")  # the EMA generator with its standing statistics
        return Final(model=final, card_family="dcgan")


def _sample_labels(config, num_images: int) -> torch.Tensor | None:
    if not config.num_classes:
        return None
    return torch.arange(num_images) % config.num_classes  # each class in turn, one per grid column


@contextlib.contextmanager
def generator_for_sampling(model, ema, device, num_batches: int = 16, batch_size: int = 256):
    """Temporarily put the EMA weights into `model.generator`, with BatchNorm running statistics
    recomputed for them (a cumulative average over `num_batches` of fresh latents), then restore
    the training weights and buffers exactly. Without EMA it is a no-op."""
    if ema is None:
        yield model
        return
    generator = model.generator
    saved = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    rng = torch.get_rng_state()
    try:
        ema.copy_to(generator.parameters())
        recompute_batchnorm_statistics(generator, model.config, device, num_batches, batch_size)
        yield model
    finally:
        generator.load_state_dict(saved)
        torch.set_rng_state(rng)


@torch.no_grad()
def recompute_batchnorm_statistics(generator, config, device, num_batches: int, batch_size: int) -> None:
    """Set every BatchNorm's running mean/var to the average over fresh generator batches."""
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training = generator.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    generator.train()
    sampler = torch.Generator(device="cpu").manual_seed(0)
    with local_batchnorm(generator):  # the main process alone runs this: train.sync_batchnorm must not wait for the others
        for _ in range(num_batches):
            latents = torch.randn(batch_size, config.latent_dim, generator=sampler).to(device)
            labels = torch.randint(0, config.num_classes, (batch_size,), generator=sampler).to(device) if config.num_classes else None
            generator(latents, labels)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    generator.train(was_training)
