"""`method: contrastive` on images — SimCLR (Chen et al. 2020, arXiv:2002.05709). Called by
`hfgen.train.contrastive.run` when the recipe's model is an hfgen image encoder; same recipe section
(`contrastive:` with `temperature`, `gather_across_processes`, and the image-only `image_augment` and `probe`).

Each batch becomes two augmented views per image (`hfgen.data.augment`, torch, on the batch), both go through the
encoder and a projection head in one forward pass, and NT-Xent (`hfgen.losses.nt_xent`) pulls the two views of an
image together against every other view in the global batch: embeddings are gathered from every process with
gradients flowing back to their owners. The projection head is dropped after pretraining: the saved model is the
`ImageEncoderModel`, which `ImageEncoderForImageClassification.from_pretrained` loads. The encoder is scored by a
linear probe and kNN on frozen features every `train.eval_every` steps and at the end.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from ..config import Recipe
from ..data import save_image_grid, to_float
from ..data.augment import simclr_views
from ..hub import render_model_card
from ..losses.nt_xent import nt_xent_loss
from ..metrics.probe import evaluate_probe
from ..models.image_encoder import ImageEncoderForContrastiveLearning
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

VIEWS_SEED = 1234  # the example views drawn into samples/views.png


def run(recipe: Recipe) -> Path:
    """SimCLR-pretrain the recipe's image encoder; returns the output folder holding the encoder."""
    options, train, data = recipe.contrastive, recipe.train, recipe.data
    accelerator = build_accelerator(recipe, log_with=trackers_for(recipe))
    resume_from = prepare_output_dir(recipe, accelerator)
    seed_everything(train.seed, accelerator, per_process=False)

    encoder = build_model(recipe)  # ImageEncoderModel: fresh, or the encoder of a pretrained folder
    model = ImageEncoderForContrastiveLearning(encoder.config)  # + a fresh projection head
    model.image_encoder = encoder
    config = encoder.config
    splits = load_image_splits(recipe, config.image_size, config.num_channels)
    loader = build_dataloader(splits.train, train.batch_size, seed=train.seed, shuffle=True, drop_last=True, num_workers=data.num_workers)
    eval_batch = train.eval_batch_size or train.batch_size
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
    if accelerator.is_main_process:
        write_views(splits.train, options.image_augment, Path(train.output_dir) / "samples" / "views.png")

    def probe(final: bool = False) -> dict:
        loaders = probe_loaders(accelerator, splits, options.probe, eval_batch, train.seed, final=True) if final else probes
        if loaders is None:
            return {}
        was_training = model.training
        model.eval()
        results = evaluate_probe(accelerator, lambda x: unwrapped.image_encoder(x).pooler_output, *loaders, options.probe)
        model.train(was_training)
        return {f"eval_{k}" if k.endswith("accuracy") else k: v for k, v in results.items()}

    model.train()  # from_pretrained hands models back in eval mode
    bar = progress_bar(accelerator, total_steps, state.step, desc="simclr")
    started, images_seen = time.perf_counter(), 0
    for batch in iterate_batches(accelerator, loader, state, total_steps):
        images = to_float(batch["pixel_values"])  # (batch, channels, height, width) in [0, 1]
        first, second = simclr_views(images, options.image_augment)  # global RNG: checkpointed per process
        with accelerator.accumulate(model):
            embeddings = model(torch.cat([first, second])).embeddings.float()  # (2 * batch, projection_dim)
            z_first, z_second = embeddings.chunk(2)
            loss = nt_xent_loss(z_first, z_second, temperature=options.temperature, gather_across_processes=options.gather_across_processes)
            backward_and_step(accelerator, loss, model, optimizer, train.max_grad_norm)
        check_finite(accelerator, {"loss": loss}, state.step, train.output_dir)
        images_seen += images.shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        state.step += 1
        bar.update(1)

        if state.step % train.log_every == 0 or state.step == total_steps:
            rate = images_seen / (time.perf_counter() - started)
            with torch.no_grad():  # how often a view's most similar other view is its partner (this process's batch)
                normalized = torch.nn.functional.normalize(embeddings.detach(), dim=1)
                similarity = normalized @ normalized.T
                similarity.fill_diagonal_(-2.0)
                half = z_first.shape[0]
                partner = torch.cat([torch.arange(half, 2 * half), torch.arange(half)]).to(similarity.device)
                top1 = (similarity.argmax(dim=1) == partner).float().mean().item()
            logs = {"loss": loss.item(), "positive_top1": top1, "lr": scheduler.get_last_lr()[0], "images_per_s": rate, "epoch": state.epoch}
            bar.set_postfix(loss=f"{logs['loss']:.3f}", top1=f"{top1:.2f}", img_s=f"{rate:.0f}")
            accelerator.log(logs, step=state.step)
        if train.eval_every and state.step % train.eval_every == 0 and state.step < total_steps:
            accelerator.log(probe(), step=state.step)
        if train.save_every and state.step % train.save_every == 0 and state.step < total_steps:
            sync_buffers(accelerator, model)
            save_checkpoint(accelerator, train.output_dir, state, train.keep_last)
    bar.close()

    sync_buffers(accelerator, model)
    save_checkpoint(accelerator, train.output_dir, state, train.keep_last)
    elapsed = time.perf_counter() - started
    results = {"train_images_per_s": images_seen / elapsed if images_seen else None, "train_seconds": elapsed, "steps": state.step}
    results.update(probe(final=True))
    results["unreadable_images_skipped"] = splits.unreadable_skipped
    accelerator.log({k: v for k, v in results.items() if isinstance(v, (int, float))}, step=state.step)
    if "eval_linear_probe_accuracy" in results:
        logger.info("linear probe accuracy %.4f, kNN accuracy %.4f", results["eval_linear_probe_accuracy"], results["eval_knn_accuracy"])
    files = None
    encoder = unwrapped.image_encoder  # the projection head is dropped here
    if accelerator.is_main_process:
        write_json_atomic(Path(train.output_dir) / "eval_results.json", results)
        files = {
            "README.md": render_model_card("image_encoder", recipe=recipe, model=encoder, results=results, pipeline_tag="image-feature-extraction"),
            **image_processor_files(config),
        }
    save_final_model(accelerator, encoder, train.output_dir, files)
    accelerator.end_training()
    return Path(train.output_dir)


def write_views(images, augment, path: Path, count: int = 16) -> None:
    """A PNG of `count` training images (top row) and two SimCLR views of each (rows below), from a fixed seed."""
    originals = to_float(torch.stack([images[i]["pixel_values"] for i in range(min(count, len(images)))]))
    first, second = simclr_views(originals, augment, generator=torch.Generator().manual_seed(VIEWS_SEED))
    save_image_grid(torch.cat([originals, first, second]), path, nrow=len(originals))
