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
import time
from pathlib import Path

import torch

from ..config import Recipe, RecipeError
from ..data import ImageDataset, build_dataset, require_columns, save_image_grid, select_split
from ..data import normalize_to_symmetric, random_horizontal_flip, to_float
from ..hub import render_model_card
from ..losses.adversarial import discriminator_loss, generator_loss
from .accelerator import build_accelerator, seed_everything, sync_buffers
from .generator_eval import GeneratorEvaluation, final_sample_quality
from .checkpoint import TrainState, load_checkpoint, prepare_output_dir, save_checkpoint, save_final_model, write_json_atomic
from .models import build_model
from .optim import backward_and_step, build_optimizer, build_scheduler
from .tracking import (
    build_dataloader,
    check_finite,
    iterate_batches,
    progress_bar,
    start_tracking,
    total_training_steps,
    trackers_for,
)

logger = logging.getLogger("hfgen")

SAMPLE_SEED = 1234  # fixed latents for the PNG grids, so grids are comparable across steps


def run(recipe: Recipe) -> Path:
    """Train the recipe's DCGAN; returns the output folder holding the final model."""
    options = recipe.gan
    train = recipe.train
    accelerator = build_accelerator(recipe, log_with=trackers_for(recipe))
    resume_from = prepare_output_dir(recipe, accelerator)
    seed_everything(train.seed, accelerator, per_process=False)

    data = recipe.data
    dataset = build_dataset(data.dataset, image_column=data.image_column, on_bad_image=data.on_bad_image)
    require_columns(dataset, {"data.image_column": data.image_column, "data.label_column": data.label_column}, ref=data.dataset)
    train_split = select_split(dataset, data.train_split, "data.train_split", ref=data.dataset)
    if data.max_train_samples is not None:
        train_split = train_split.shuffle(seed=train.seed).select(range(min(data.max_train_samples, len(train_split))))

    overrides = {}
    if data.label_column:
        names = getattr(train_split.features[data.label_column], "names", None)
        if names is None:
            raise RecipeError(f"{recipe.source}: data.label_column {data.label_column!r} is not a class-label column")
        overrides = {"num_classes": len(names), "id2label": dict(enumerate(names))}
    model = build_model(recipe, **overrides)
    config = model.config
    if config.num_classes and not data.label_column:
        raise RecipeError(f"{recipe.source}: model.num_classes is {config.num_classes} (class-conditional) but data.label_column is not set")

    images = ImageDataset(
        train_split,
        image_column=data.image_column,
        label_column=data.label_column,
        image_size=config.image_size,
        num_channels=config.num_channels,
    )
    loader = build_dataloader(images, train.batch_size, seed=train.seed, shuffle=True, drop_last=True, num_workers=data.num_workers)

    betas = (train.adam_beta1, train.adam_beta2)
    g_opt = build_optimizer(model.generator.parameters(), train, options.generator_learning_rate, betas)
    d_opt = build_optimizer(model.discriminator.parameters(), train, options.discriminator_learning_rate, betas)
    loader = accelerator.prepare(loader)  # first, so len(loader) is the per-process batch count
    total_steps = total_training_steps(recipe, len(loader))
    g_sched = build_scheduler(g_opt, train, total_steps)
    d_sched = build_scheduler(d_opt, train, total_steps)
    # prepared one by one: each network gets its own DDP wrapper and gradient sync
    generator, discriminator, g_opt, d_opt, g_sched, d_sched = accelerator.prepare(
        model.generator, model.discriminator, g_opt, d_opt, g_sched, d_sched
    )
    ema = None
    if options.ema_decay is not None:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(model.generator.parameters(), decay=options.ema_decay)
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    evaluation = GeneratorEvaluation(recipe, accelerator.device)
    accelerator.register_for_checkpointing(evaluation)
    if resume_from is not None:
        load_checkpoint(accelerator, resume_from, state)  # restores every process's RNG too
    else:
        seed_everything(train.seed, accelerator, per_process=True)  # a noise stream per process
    start_tracking(accelerator, recipe)

    sample_labels = _sample_labels(config, options.num_sample_images)
    discriminator_module = accelerator.unwrap_model(discriminator)
    bar = progress_bar(accelerator, total_steps, state.step, desc="gan")
    started, images_seen = time.perf_counter(), 0
    for batch in iterate_batches(accelerator, loader, state, total_steps):
        real = normalize_to_symmetric(to_float(batch["pixel_values"]))  # (batch, channels, height, width) in [-1, 1]
        if data.random_flip:
            real = random_horizontal_flip(real)
        labels = batch.get("labels") if config.num_classes else None
        latents = torch.randn(real.shape[0], config.latent_dim, device=real.device)

        with accelerator.accumulate(generator, discriminator):
            # discriminator update: real vs (detached) fake
            with accelerator.autocast():
                fake = generator(latents, labels)
                d_loss = discriminator_loss(discriminator(real, labels), discriminator(fake.detach(), labels), options.loss)
            backward_and_step(accelerator, d_loss, discriminator, d_opt, train.max_grad_norm)

            # generator update through the (frozen) discriminator; the unwrapped module keeps
            # this backward out of the discriminator's DDP gradient sync
            discriminator_module.requires_grad_(False)
            with accelerator.autocast():
                g_loss = generator_loss(discriminator_module(fake, labels), options.loss)
            backward_and_step(accelerator, g_loss, generator, g_opt, train.max_grad_norm)  # g_opt holds no D weights
            discriminator_module.requires_grad_(True)

        check_finite(accelerator, {"d_loss": d_loss, "g_loss": g_loss}, state.step, train.output_dir)
        images_seen += real.shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        g_sched.step()
        d_sched.step()
        if ema is not None:
            ema.step(model.generator.parameters())
        state.step += 1
        bar.update(1)

        if state.step % train.log_every == 0 or state.step == total_steps:
            rate = images_seen / (time.perf_counter() - started)
            logs = {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "lr": g_sched.get_last_lr()[0], "images_per_s": rate, "epoch": state.epoch}
            bar.set_postfix(d=f"{logs['d_loss']:.3f}", g=f"{logs['g_loss']:.3f}", img_s=f"{rate:.0f}")
            accelerator.log(logs, step=state.step)
        if train.sample_every and state.step % train.sample_every == 0 and accelerator.is_main_process:
            with generator_for_sampling(model, ema, accelerator.device):
                grid = model.generate(options.num_sample_images, seed=SAMPLE_SEED, labels=sample_labels)
            save_image_grid(grid, Path(train.output_dir) / "samples" / f"step-{state.step:08d}.png")
        if evaluation.enabled and train.eval_every and state.step % train.eval_every == 0 and state.step < total_steps:
            if accelerator.is_main_process:
                with generator_for_sampling(model, ema, accelerator.device):
                    accelerator.log(evaluation.evaluate(model, state.step), step=state.step)
            accelerator.wait_for_everyone()
        if train.save_every and state.step % train.save_every == 0 and state.step < total_steps:
            sync_buffers(accelerator, generator, discriminator)
            save_checkpoint(accelerator, train.output_dir, state, train.keep_last)
    bar.close()

    elapsed = time.perf_counter() - started  # the training loop alone, for images/s
    sync_buffers(accelerator, generator, discriminator)
    save_checkpoint(accelerator, train.output_dir, state, train.keep_last)
    results = {"train_images_per_s": images_seen / elapsed if images_seen else None, "train_seconds": elapsed, "steps": state.step}
    if accelerator.is_main_process:
        with generator_for_sampling(model, ema, accelerator.device):
            grid = model.generate(options.num_sample_images, seed=SAMPLE_SEED, labels=sample_labels)
            save_image_grid(grid, Path(train.output_dir) / "samples" / "final.png")
            save_image_grid(grid, Path(train.output_dir) / "sample_grid.png")
            results.update(final_sample_quality(evaluation, model, state.step))
            accelerator.log({k: v for k, v in results.items() if isinstance(v, (int, float))}, step=state.step)
            card = render_model_card("dcgan", recipe=recipe, model=model, results=results)
            write_json_atomic(Path(train.output_dir) / "eval_results.json", results)
            final = copy.deepcopy(model).to("cpu")
    else:
        final, card = model, ""
    save_final_model(accelerator, final, train.output_dir, {"README.md": card} if accelerator.is_main_process else None)
    accelerator.end_training()
    return Path(train.output_dir)


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
    for _ in range(num_batches):
        latents = torch.randn(batch_size, config.latent_dim, generator=sampler).to(device)
        labels = torch.randint(0, config.num_classes, (batch_size,), generator=sampler).to(device) if config.num_classes else None
        generator(latents, labels)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    generator.train(was_training)
