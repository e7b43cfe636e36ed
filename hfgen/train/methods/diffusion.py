"""`method: diffusion` — denoising diffusion (DDPM, Ho et al. 2020) with diffusers' `UNet2DModel` and `DDPMScheduler`.

Each step noises a batch of images in [-1, 1] to uniformly drawn timesteps (`DDPMScheduler.add_noise`) and regresses
the UNet's output on the noise (or v, or x0: `diffusion.prediction_type`), in float32 whatever the autocast. With
`data.label_column` the UNet is class-conditional (`num_class_embeds`: a class embedding added to the timestep's).
An EMA of the UNet (diffusers' `EMAModel`) is what grids, FID and the saved folder use. Grids and FID sample with a
fast solver (`diffusion.sampler`, DDIM by default) built from the training schedule.

The artifact is a diffusers pipeline folder (`hfgen.diffusion`): `DDPMPipeline`, or `ClassConditionalDDPMPipeline`
whose code the folder carries.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F

from ...config import Recipe, RecipeError
from ...data import normalize_to_symmetric, random_horizontal_flip, save_image_grid, to_float
from ...diffusion import DiffusionGenerator
from ..batches import build_dataloader
from ..engine import Final, Step, TrainingRun
from ..generator_eval import GeneratorEvaluation, final_sample_quality
from ..image_splits import load_image_splits
from ..optim import backward_and_step, build_optimizer

logger = logging.getLogger("hfgen")

SAMPLE_SEED = 1234  # fixed noise for the PNG grids, so grids are comparable across steps


class Diffusion:
    """`method: diffusion` on the training engine."""

    name, unit = "diffusion", "images"

    def __init__(self, recipe: Recipe):
        self.recipe, self.options = recipe, recipe.diffusion

    def build(self, run: TrainingRun) -> None:
        from diffusers import DDPMScheduler

        recipe, options, train, data = self.recipe, self.options, run.train, self.recipe.data
        self.run = run
        unet, id2label = self._build_unet()
        size = unet.config.sample_size
        splits = load_image_splits(recipe, size if isinstance(size, int) else size[0], unet.config.in_channels, eval_split=False)
        self.conditional = bool(unet.config.num_class_embeds)
        if self.conditional and not data.label_column:
            raise RecipeError(f"{recipe.source}: model.num_class_embeds is set (class-conditional) but data.label_column is not")
        if data.label_column:
            if splits.label_names is None:
                raise RecipeError(f"{recipe.source}: data.label_column {data.label_column!r} is not a class-label column")
            if unet.config.num_class_embeds != len(splits.label_names):
                raise RecipeError(f"{recipe.source}: model.num_class_embeds is {unet.config.num_class_embeds} but "
                                  f"data.label_column {data.label_column!r} has {len(splits.label_names)} classes")
            id2label = dict(enumerate(splits.label_names))
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=options.num_train_timesteps, beta_schedule=options.beta_schedule,
            beta_start=options.beta_start, beta_end=options.beta_end, prediction_type=options.prediction_type,
        )  # fmt: skip
        loader = build_dataloader(splits.train, train.batch_size, seed=train.seed, shuffle=True, drop_last=True, num_workers=data.num_workers)
        optimizer = build_optimizer(unet.parameters(), train, betas=(train.adam_beta1, train.adam_beta2))
        _, (self.unet,), (self.optimizer,) = run.prepare(loader, [unet], [optimizer])
        self.unwrapped = run.accelerator.unwrap_model(self.unet)
        self.stateful = {}
        self.ema = None
        if options.ema_decay is not None:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.unwrapped.parameters(), decay=options.ema_decay, use_ema_warmup=options.ema_warmup)
            self.ema.to(run.device)
            self.stateful["ema"] = self.ema
        # what grids, FID and the saved folder sample from: a copy of the UNet holding the EMA weights
        self.generator = DiffusionGenerator(copy.deepcopy(self.unwrapped), self.noise_scheduler.config, id2label=id2label,
                                            sampler=options.sampler, num_inference_steps=options.num_inference_steps)
        self.evaluation = GeneratorEvaluation(recipe, run.device)
        self.stateful["generator_evaluation"] = self.evaluation

    def _build_unet(self):
        """The UNet from `model.type: unet2d` and its fields, or from `model.pretrained` (a pipeline folder or repo)."""
        from diffusers import UNet2DModel

        spec, recipe = self.recipe.model, self.recipe
        if spec.type is not None:
            if spec.type != "unet2d":
                raise RecipeError(f"{recipe.source}: method diffusion trains model.type: unet2d (diffusers' UNet2DModel), not {spec.type!r}")
            try:
                return UNet2DModel(**spec.config), None
            except (ValueError, TypeError) as error:
                raise RecipeError(f"{recipe.source}: model: UNet2DModel refuses these fields: {error}") from None
        if spec.config:  # refused before anything is downloaded or loaded
            raise RecipeError(f"{recipe.source}: model.pretrained is a trained UNet: its fields ({sorted(spec.config)}) cannot change")
        generator = DiffusionGenerator.from_pretrained(spec.pretrained, revision=spec.revision)
        unet = generator.unet
        return unet.train(), generator.config.id2label

    def step(self, batch) -> Step:
        accelerator, train = self.run.accelerator, self.run.train
        clean = normalize_to_symmetric(to_float(batch["pixel_values"]))  # (batch, channels, height, width) in [-1, 1]
        if self.recipe.data.random_flip:
            clean = random_horizontal_flip(clean)
        labels = batch["labels"] if self.conditional else None
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (clean.shape[0],), device=clean.device)
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        with accelerator.autocast():
            prediction = self.unet(noisy, timesteps, class_labels=labels).sample
        target = {"epsilon": noise, "sample": clean}.get(self.noise_scheduler.config.prediction_type)
        if target is None:  # v_prediction
            target = self.noise_scheduler.get_velocity(clean, noise, timesteps)
        loss = F.mse_loss(prediction.float(), target.float())
        backward_and_step(accelerator, loss, self.unet, self.optimizer, train.max_grad_norm)
        return Step(losses={"loss": loss}, count=clean.shape[0])

    def after_optimizer_step(self) -> None:
        if self.ema is not None:
            self.ema.step(self.unwrapped.parameters())

    def sampling_generator(self) -> DiffusionGenerator:
        """The generator holding the current EMA weights (or the training weights without EMA)."""
        if self.ema is not None:
            self.ema.copy_to(self.generator.unet.parameters())
        else:
            self.generator.unet.load_state_dict(self.unwrapped.state_dict())
        return self.generator

    def evaluate(self) -> dict:
        metrics = {}
        if self.evaluation.enabled and self.run.is_main_process:
            metrics = self.evaluation.evaluate(self.sampling_generator(), self.run.state.step)
        self.run.accelerator.wait_for_everyone()
        return metrics

    def write_samples(self, path) -> None:
        count, classes = self.options.num_sample_images, self.generator.config.num_classes
        nrow = classes if classes and count % classes == 0 else None  # conditional: one class per column
        save_image_grid(self.sampling_generator().generate(count, seed=SAMPLE_SEED).cpu(), path, nrow=nrow)

    def finish(self, results: dict) -> Final:
        generator = self.sampling_generator()
        if self.run.is_main_process:
            results.update(final_sample_quality(self.evaluation, generator, self.run.state.step))
            results.update({"sampler": self.options.sampler, "sampler_steps": self.options.num_inference_steps})
        return Final(model=generator, card_family="ddpm", pipeline_tag=None if self.conditional else "unconditional-image-generation")
