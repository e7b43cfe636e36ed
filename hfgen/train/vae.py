"""`method: vae` — variational autoencoder training (Kingma & Welling 2014; beta-VAE) on images.

The model computes its own loss (negative ELBO per image, in nats); this loop adds KL warm-up
(Bowman et al. 2016), and reports the test-split ELBO per image.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from ..config import Recipe
from ..data import ImageDataset, build_dataset, require_columns, save_image_grid, select_split
from ..data import random_horizontal_flip, to_float
from ..hub import render_model_card
from .accelerator import build_accelerator, seed_everything
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

SAMPLE_SEED = 1234


def run(recipe: Recipe) -> Path:
    """Train the recipe's VAE; returns the output folder holding the final model."""
    options, train, data = recipe.vae, recipe.train, recipe.data
    accelerator = build_accelerator(recipe, log_with=trackers_for(recipe))
    resume_from = prepare_output_dir(recipe, accelerator)
    seed_everything(train.seed, accelerator, per_process=False)

    dataset = build_dataset(data.dataset, image_column=data.image_column, on_bad_image=data.on_bad_image)
    require_columns(dataset, {"data.image_column": data.image_column}, ref=data.dataset)
    model = build_model(recipe)
    config = model.config

    def images_of(split: str, limit: int | None) -> ImageDataset:
        rows = select_split(dataset, split, "data.train_split" if split == data.train_split else "data.eval_split", ref=data.dataset)
        if limit is not None:
            rows = rows.shuffle(seed=train.seed).select(range(min(limit, len(rows))))
        return ImageDataset(rows, image_column=data.image_column, image_size=config.image_size, num_channels=config.num_channels)

    train_images = images_of(data.train_split, data.max_train_samples)
    loader = build_dataloader(train_images, train.batch_size, seed=train.seed, shuffle=True, drop_last=True, num_workers=data.num_workers)
    eval_loader = None
    if data.eval_split:
        eval_images = images_of(data.eval_split, data.max_eval_samples)
        eval_loader = build_dataloader(eval_images, train.eval_batch_size or train.batch_size, seed=train.seed, shuffle=False, drop_last=False)
        eval_loader = accelerator.prepare(eval_loader)
        reference = to_float(torch.stack([eval_images[i]["pixel_values"] for i in range(min(options.num_sample_images // 2, len(eval_images)))]))

    optimizer = build_optimizer(model.parameters(), train)
    loader = accelerator.prepare(loader)  # first, so len(loader) is the per-process batch count
    total_steps = total_training_steps(recipe, len(loader))
    scheduler = build_scheduler(optimizer, train, total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    evaluation = GeneratorEvaluation(recipe, accelerator.device)
    accelerator.register_for_checkpointing(evaluation)
    if resume_from is not None:
        load_checkpoint(accelerator, resume_from, state)
    else:
        seed_everything(train.seed, accelerator, per_process=True)
    start_tracking(accelerator, recipe)
    unwrapped = accelerator.unwrap_model(model)

    def write_samples(name: str) -> None:
        samples = unwrapped.generate(options.num_sample_images // 2 if eval_loader else options.num_sample_images, seed=SAMPLE_SEED)
        if eval_loader is not None:  # top half: test images; then their reconstructions; then prior samples
            with torch.no_grad():
                recon = unwrapped.reconstruct(reference.to(accelerator.device)).float().cpu()
            samples = torch.cat([reference, recon, samples.float().cpu()])
        save_image_grid(samples, Path(train.output_dir) / "samples" / name, nrow=8)

    bar = progress_bar(accelerator, total_steps, state.step, desc="vae")
    started, images_seen = time.perf_counter(), 0
    results: dict = {}
    for batch in iterate_batches(accelerator, loader, state, total_steps):
        pixel_values = to_float(batch["pixel_values"])  # (batch, channels, height, width) in [0, 1]
        if data.random_flip:
            pixel_values = random_horizontal_flip(pixel_values)
        kl_weight = min(1.0, (state.step + 1) / options.kl_warmup_steps) if options.kl_warmup_steps else 1.0
        with accelerator.accumulate(model):
            out = model(pixel_values, kl_weight=kl_weight)
            backward_and_step(accelerator, out.loss, model, optimizer, train.max_grad_norm)
        check_finite(accelerator, {"loss": out.loss}, state.step, train.output_dir)
        images_seen += pixel_values.shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        state.step += 1
        bar.update(1)

        if state.step % train.log_every == 0 or state.step == total_steps:
            rate = images_seen / (time.perf_counter() - started)
            logs = {
                "loss": out.loss.item(),
                "reconstruction_loss": out.reconstruction_loss.item(),
                "kl": out.kl.item(),
                "kl_weight": kl_weight,
                "lr": scheduler.get_last_lr()[0],
                "images_per_s": rate,
                "epoch": state.epoch,
            }
            bar.set_postfix(loss=f"{logs['loss']:.1f}", kl=f"{logs['kl']:.1f}", img_s=f"{rate:.0f}")
            accelerator.log(logs, step=state.step)
        if eval_loader is not None and train.eval_every and state.step % train.eval_every == 0 and state.step < total_steps:
            metrics = evaluate_elbo(accelerator, model, eval_loader)
            if evaluation.enabled and accelerator.is_main_process:
                metrics.update(evaluation.evaluate(unwrapped, state.step))
            accelerator.log(metrics, step=state.step)
            accelerator.wait_for_everyone()
        if train.sample_every and state.step % train.sample_every == 0 and accelerator.is_main_process:
            write_samples(f"step-{state.step:08d}.png")
        if train.save_every and state.step % train.save_every == 0 and state.step < total_steps:
            save_checkpoint(accelerator, train.output_dir, state, train.keep_last)
    bar.close()

    elapsed = time.perf_counter() - started  # the training loop alone, for images/s
    save_checkpoint(accelerator, train.output_dir, state, train.keep_last)
    results = {"train_images_per_s": images_seen / elapsed if images_seen else None, "train_seconds": elapsed, "steps": state.step}
    if eval_loader is not None:
        results.update(evaluate_elbo(accelerator, model, eval_loader))
        logger.info("test ELBO per image: %.2f nats", results["eval_elbo"])
    card = ""
    if accelerator.is_main_process:
        results.update(final_sample_quality(evaluation, unwrapped, state.step))
        accelerator.log({k: v for k, v in results.items() if isinstance(v, (int, float))}, step=state.step)
        write_samples("final.png")
        (Path(train.output_dir) / "sample_grid.png").write_bytes((Path(train.output_dir) / "samples" / "final.png").read_bytes())
        write_json_atomic(Path(train.output_dir) / "eval_results.json", results)
        card = render_model_card("vae", recipe=recipe, model=unwrapped, results=results)
    save_final_model(accelerator, model, train.output_dir, {"README.md": card} if accelerator.is_main_process else None)
    accelerator.end_training()
    return Path(train.output_dir)


@torch.no_grad()
def evaluate_elbo(accelerator, model, loader) -> dict:
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
        out = accelerator.unwrap_model(model)(pixel_values, kl_weight=1.0, generator=noise, reduction="none")
        per_image = torch.stack([out.reconstruction_loss, out.kl], dim=1).float()  # (batch, 2)
        per_image = accelerator.gather_for_metrics(per_image).double().cpu()
        sums += per_image.sum(0)
        count += per_image.shape[0]
    model.train(was_training)
    recon, kl = (sums / max(1, count)).tolist()
    return {"eval_elbo": -(recon + kl), "eval_reconstruction_nll": recon, "eval_kl": kl, "eval_images": count}
