"""`method: autoencoder` — pretraining an image encoder by reconstruction (optionally sparse, Ng 2011, or
denoising, Vincent et al. 2008), scored by a linear probe and kNN on its frozen features.

The model (`ImageAutoencoderModel`) computes its own loss; this loop logs it, writes PNG grids of eval images and
their reconstructions, probes the encoder every `train.eval_every` steps and at the end, and saves the whole
autoencoder: `ImageEncoderForImageClassification.from_pretrained(output_dir)` then takes its encoder.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from transformers import AutoModelForMaskedImageModeling

from ..config import Recipe
from ..data import random_horizontal_flip, save_image_grid, to_float
from ..hub import render_model_card
from ..metrics.probe import evaluate_probe
from .accelerator import build_accelerator, seed_everything, sync_buffers
from .checkpoint import (
    TrainState,
    load_checkpoint,
    prepare_output_dir,
    save_checkpoint,
    save_final_model,
    write_json_atomic,
)
from .image_inputs import (
    image_processor_files,
    load_image_splits,
    probe_loaders,
)
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

CORRUPTION_SEED = 1234  # the corrupted inputs shown in the sample grids


def run(recipe: Recipe) -> Path:
    """Train the recipe's image autoencoder; returns the output folder holding the final model."""
    options, train, data = recipe.autoencoder, recipe.train, recipe.data
    accelerator = build_accelerator(recipe, log_with=trackers_for(recipe))
    resume_from = prepare_output_dir(recipe, accelerator)
    seed_everything(train.seed, accelerator, per_process=False)

    model = build_model(recipe, auto_class=AutoModelForMaskedImageModeling)  # -> ImageAutoencoderModel
    config = model.config
    splits = load_image_splits(recipe, config.image_size, config.num_channels)
    loader = build_dataloader(splits.train, train.batch_size, seed=train.seed, shuffle=True, drop_last=True, num_workers=data.num_workers)
    eval_batch = train.eval_batch_size or train.batch_size
    eval_loader = None
    if splits.eval is not None:
        eval_loader = accelerator.prepare(build_dataloader(splits.eval, eval_batch, seed=train.seed, shuffle=False, drop_last=False))
        reference = to_float(splits.eval.pixels[: options.num_sample_images])  # (n, C, H, W) in [0, 1]
    probes = probe_loaders(accelerator, splits, options.probe, eval_batch, train.seed)
    if probes is None:
        logger.info("No linear probe / kNN: they need data.label_column and data.eval_split.")

    optimizer = build_optimizer(model.parameters(), train)
    loader = accelerator.prepare(loader)  # first, so len(loader) is the per-process batch count
    total_steps = total_training_steps(recipe, len(loader))
    scheduler = build_scheduler(optimizer, train, total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    if resume_from is not None:
        load_checkpoint(accelerator, resume_from, state)
    else:
        seed_everything(train.seed, accelerator, per_process=True)
    start_tracking(accelerator, recipe)
    unwrapped = accelerator.unwrap_model(model)

    def evaluate(final: bool = False) -> dict:
        results = {}
        if eval_loader is not None:
            results.update(evaluate_reconstruction(accelerator, model, eval_loader))
        loaders = probe_loaders(accelerator, splits, options.probe, eval_batch, train.seed, final=True) if final else probes
        if loaders is not None:
            with _frozen(model):
                probe = evaluate_probe(accelerator, lambda x: unwrapped.image_encoder(x).pooler_output, *loaders, options.probe)
            results.update({f"eval_{k}" if k.endswith("accuracy") else k: v for k, v in probe.items()})
        return results

    def write_samples(name: str) -> None:
        if eval_loader is None:
            return
        rows = [reference]
        if config.denoising != "none":  # what the encoder saw
            rows.append(unwrapped.corrupt(reference.to(accelerator.device), torch.Generator(device=accelerator.device).manual_seed(CORRUPTION_SEED)).cpu())
        with torch.no_grad():
            rows.append(unwrapped.reconstruct(reference.to(accelerator.device)).cpu())
        save_image_grid(torch.cat(rows), Path(train.output_dir) / "samples" / name, nrow=min(16, len(reference)))

    model.train()  # from_pretrained hands models back in eval mode
    bar = progress_bar(accelerator, total_steps, state.step, desc="autoencoder")
    started, images_seen = time.perf_counter(), 0
    for batch in iterate_batches(accelerator, loader, state, total_steps):
        pixel_values = to_float(batch["pixel_values"])  # (batch, channels, height, width) in [0, 1]
        if data.random_flip:
            pixel_values = random_horizontal_flip(pixel_values)
        with accelerator.accumulate(model):
            out = model(pixel_values)
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
                "sparsity_loss": out.sparsity_loss.item(),
                "mean_code_activation": out.code.detach().float().mean().item(),
                "lr": scheduler.get_last_lr()[0],
                "images_per_s": rate,
                "epoch": state.epoch,
            }
            bar.set_postfix(loss=f"{logs['loss']:.4f}", img_s=f"{rate:.0f}")
            accelerator.log(logs, step=state.step)
        if train.eval_every and state.step % train.eval_every == 0 and state.step < total_steps:
            accelerator.log(evaluate(), step=state.step)
        if train.sample_every and state.step % train.sample_every == 0 and accelerator.is_main_process:
            write_samples(f"step-{state.step:08d}.png")
        if train.save_every and state.step % train.save_every == 0 and state.step < total_steps:
            sync_buffers(accelerator, model)
            save_checkpoint(accelerator, train.output_dir, state, train.keep_last)
    bar.close()

    sync_buffers(accelerator, model)
    save_checkpoint(accelerator, train.output_dir, state, train.keep_last)
    elapsed = time.perf_counter() - started
    results = {"train_images_per_s": images_seen / elapsed if images_seen else None, "train_seconds": elapsed, "steps": state.step}
    results.update(evaluate(final=True))
    results["unreadable_images_skipped"] = splits.unreadable_skipped
    accelerator.log({k: v for k, v in results.items() if isinstance(v, (int, float))}, step=state.step)
    if "eval_linear_probe_accuracy" in results:
        logger.info("linear probe accuracy %.4f, kNN accuracy %.4f", results["eval_linear_probe_accuracy"], results["eval_knn_accuracy"])
    files = None
    if accelerator.is_main_process:
        write_samples("final.png")
        if eval_loader is not None:
            (Path(train.output_dir) / "sample_grid.png").write_bytes((Path(train.output_dir) / "samples" / "final.png").read_bytes())
        write_json_atomic(Path(train.output_dir) / "eval_results.json", results)
        files = {"README.md": render_model_card("image_autoencoder", recipe=recipe, model=unwrapped, results=results, pipeline_tag="image-feature-extraction"), **image_processor_files(config)}
    save_final_model(accelerator, model, train.output_dir, files)
    accelerator.end_training()
    return Path(train.output_dir)


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
