"""The training engine: the one loop every method runs on.

The engine owns what is the same for every method: the Accelerator and output folder, precision (`auto` from the
hardware), seeding, `prepare`, resume, the progress bar, the log / eval / sample / save cadence, finiteness checks
(at the log cadence and before every checkpoint, never a host sync per micro-batch), checkpoints, the final save
(model, card, `eval_results.json`, recipe) and `end_training`. Hub pushes wrap it in `hfgen.train.run`.

A method (`hfgen/train/methods/<method>.py`) says only what is its own:

    class VAE:
        name = "vae"                          # progress bar label
        unit = "images"                       # throughput: images_per_s, train_images_per_s
        def build(self, run): ...             # model, data, optimizers -> run.prepare(...)
        def step(self, batch) -> Step: ...    # one micro-batch: forward, backward_and_step; on-device scalars
        def evaluate(self) -> dict: ...       # held-out figures every train.eval_every steps
        def finish(self, results) -> Final: ...  # final figures and the artifact to save

Optional hooks (plain attributes looked up with getattr, so a method writes only what it uses):
`before_training()` (fresh runs only; e.g. the "before" figures), `after_optimizer_step()` (e.g. EMA),
`write_samples(path)` (PNG grids, main process), `log_values()` (host-side figures to log),
`should_stop` (early stopping), `before_final_checkpoint()`, `after_final_save()`, and `stateful` (objects with
state_dict/load_state_dict saved in every checkpoint as safetensors + JSON).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Recipe, RecipeError
from ..sharing import scrub_config_files, shareable_tree
from .accelerator import build_accelerator, seed_everything, sync_buffers
from .batches import iterate_batches, total_training_steps
from .checkpoint import (
    TrainState,
    prepare_output_dir,
    resume_from_checkpoint,
    save_checkpoint,
    save_final_model,
    write_json_atomic,
)
from .divergence import check_finite, check_weights_finite
from .model_setup import count_parameters, enable_gradient_checkpointing
from .optim import build_scheduler
from .progress import progress_bar
from .sharding import choose_wrapping_units, register_forward_methods
from .sync_batchnorm import convert_sync_batchnorm
from .trackers import start_tracking, trackers_for

logger = logging.getLogger("hfgen")


@dataclass
class Step:
    """What one micro-batch of a method gives the engine."""

    losses: dict[str, torch.Tensor]  # on-device scalars: averaged over the log window, checked for finiteness
    count: int  # images / tokens / examples in this process's micro-batch (for throughput)
    extras: dict[str, Any] = field(default_factory=dict)  # other scalars to average and log (not checked)


@dataclass
class Final:
    """The artifact a method leaves in `train.output_dir`."""

    model: torch.nn.Module  # saved with save_pretrained (unwrapped); config.json is moved in last
    files: dict[str, str] = field(default_factory=dict)  # text files beside it (README.md, processor files, ...)
    tokenizer: Any = None  # saved beside the model when given
    card_family: str | None = None  # model_cards/<family>.md; None: no card
    pipeline_tag: str | None = None


class TrainingRun:
    """What a method's `build` gets: the recipe, the Accelerator, the loop's position, and `prepare`."""

    def __init__(self, recipe: Recipe, accelerator, precision: str, precision_reason: str):
        self.recipe, self.accelerator = recipe, accelerator
        self.train = recipe.train
        self.output_dir = Path(recipe.train.output_dir)
        self.device = accelerator.device
        self.precision, self.precision_reason = precision, precision_reason
        self.state = TrainState()
        self.loader, self.loader_is_per_process = None, False
        self.models: list[torch.nn.Module] = []
        self.optimizers: list = []
        self.schedulers: list = []
        self.total_steps = 0
        self.batches_per_epoch: int | None = None
        self.items_seen = 0  # images / tokens / examples trained on in this run, over every process
        self.parameter_counts: dict = {}  # parameters, trainable_parameters of the prepared models (LoRA: adapters + head)
        self.checkpoint_hooks: list = []  # (save(folder), load(folder)) pairs, e.g. the best model kept in checkpoints

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    def _sync_batchnorm(self, models: list) -> list:
        """`train.sync_batchnorm`: every BatchNorm of `models` normalises with the global batch's statistics."""
        converted = [convert_sync_batchnorm(model, self.accelerator.device.type) for model in models]
        count = sum(n for _, n in converted)
        if not count:
            raise RecipeError(f"{self.recipe.source}: train.sync_batchnorm: the model has no BatchNorm layer; set it to false")
        logger.info("train.sync_batchnorm: %d BatchNorm layers use the statistics of all %d processes' batches",
                    count, self.accelerator.num_processes)
        return [model for model, _ in converted]

    def prepare(self, loader, models: list, optimizers: list, loader_is_per_process: bool = False) -> tuple[Any, list, list]:
        """Prepare the training loader, then each model and optimizer (separately: two networks get two DDP
        wrappers, so each syncs its own gradients), and build one learning-rate schedule per optimizer over the
        run's optimizer steps. Returns the prepared (loader, models, optimizers). `loader_is_per_process`: the
        loader already yields this process's own batches (a stream split by node); it is only placed on the device
        and made resumable, not sharded or dispatched again."""
        accelerator = self.accelerator
        self.loader_is_per_process = loader_is_per_process
        if loader_is_per_process and accelerator.num_processes > 1:
            from accelerate.data_loader import prepare_data_loader

            self.loader = prepare_data_loader(loader, accelerator.device, num_processes=1, process_index=0,
                                              put_on_device=True, dispatch_batches=False, non_blocking=accelerator.non_blocking)
        else:
            self.loader = accelerator.prepare(loader)  # first, so len(loader) is the per-process batch count
        try:
            self.batches_per_epoch = len(self.loader)
        except TypeError:  # a streamed dataset: no length, train.max_steps is required
            self.batches_per_epoch = None
        self.total_steps = total_training_steps(self.recipe, self.batches_per_epoch or 0)
        schedulers = [build_scheduler(optimizer, self.train, self.total_steps) for optimizer in optimizers]
        if self.train.sync_batchnorm and accelerator.num_processes > 1:
            models = self._sync_batchnorm(models)
        for model in models:
            if self.train.gradient_checkpointing:
                enable_gradient_checkpointing(model, self.recipe.source)
            if self.train.compile:  # in place (nn.Module.compile): the class, state_dict keys and saves stay the model's own
                model.compile()
        self.parameter_counts = count_parameters(models)
        choose_wrapping_units(accelerator, models)  # FSDP: the encoder's layers, unless the launch names them
        prepared = accelerator.prepare(*models, *optimizers, *schedulers)
        prepared = list(prepared) if isinstance(prepared, (list, tuple)) else [prepared]
        n, m = len(models), len(optimizers)
        self.models, self.optimizers, self.schedulers = prepared[:n], prepared[n : n + m], prepared[n + m :]
        register_forward_methods(accelerator, self.models)
        return self.loader, self.models, self.optimizers

    def text_counts(self, counts: dict[str, int]) -> dict[str, int]:
        """Counts kept while reading the training texts; summed over the processes when each read its own part
        (the loader was prepared per process), else the main process's (every process read the whole split)."""
        if not self.loader_is_per_process or self.accelerator.num_processes == 1:
            return counts
        values = torch.tensor(list(counts.values()), dtype=torch.long, device=self.device)
        return dict(zip(counts, self.accelerator.reduce(values, reduction="sum").tolist()))

    def prepare_eval_loader(self, loader):
        """An evaluation loader, sharded over processes (`gather_for_metrics` drops the padding duplicates)."""
        return None if loader is None else self.accelerator.prepare(loader)

    @property
    def learning_rate(self) -> float:
        return max(self.schedulers[0].get_last_lr()) if self.schedulers else float("nan")


_SHORT_UNITS = {"images": "img_s", "tokens": "tok_s", "examples": "ex_s"}  # progress-bar labels


class _Window:
    """Sums of on-device scalars since the last read: no host sync until `means()`."""

    def __init__(self, device):
        self.device, self.sums, self.batches = device, {}, 0

    def add(self, values: dict) -> None:
        for key, value in values.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            value = value.to(self.device)
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.batches += 1

    def means(self) -> dict[str, torch.Tensor]:
        return {key: total / max(1, self.batches) for key, total in self.sums.items()}

    def reset(self) -> None:
        self.sums, self.batches = {}, 0


def train(recipe: Recipe, method) -> Path:
    """Run `method` on the engine; returns the output folder holding the final model."""
    from .hardware import planned_device_type, resolve_mixed_precision

    train_section = recipe.train
    precision, reason = resolve_mixed_precision(train_section.mixed_precision, planned_device_type())
    accelerator = build_accelerator(recipe, precision, log_with=trackers_for(recipe), method=method)
    logger.info("mixed precision: %s (%s)", precision, reason)
    candidates = prepare_output_dir(recipe, accelerator)
    seed_everything(train_section.seed, accelerator, per_process=False)  # the same model on every process

    run = TrainingRun(recipe, accelerator, precision, reason)
    method.build(run)
    stateful = dict(getattr(method, "stateful", {}) or {})
    results: dict = dict(run.parameter_counts)
    resumed = resume_from_checkpoint(run, candidates, stateful)
    if not resumed:
        before = getattr(method, "before_training", None)
        if before is not None:
            results.update(before() or {})
        seed_everything(train_section.seed, accelerator, per_process=True)  # a noise stream per process
    start_tracking(accelerator, recipe, resumed=resumed)  # resumed: the same wandb / MLflow runs go on

    state, total_steps = run.state, run.total_steps
    for model in run.models:
        model.train()  # from_pretrained hands models back in eval mode (no dropout, frozen BatchNorm statistics)
    every = _Cadence(train_section, total_steps)
    bar = progress_bar(accelerator, total_steps, state.step, desc=method.name)
    window, unchecked = _Window(accelerator.device), _Window(accelerator.device)
    paused = 0.0
    started = time.perf_counter()
    for batch in iterate_batches(accelerator, run.loader, state, total_steps):
        with accelerator.accumulate(*run.models):
            out = method.step(batch)
        window.add({**out.losses, **out.extras})
        unchecked.add(out.losses)
        run.items_seen += out.count * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        for scheduler in run.schedulers:
            scheduler.step()
        after = getattr(method, "after_optimizer_step", None)
        if after is not None:
            after()
        state.step += 1
        bar.update(1)

        pause = time.perf_counter()
        if every.log(state.step):
            means = window.means()
            check_finite(accelerator, {k: means[k] for k in out.losses}, state.step, run.output_dir)
            unchecked.reset()
            values = dict(zip(means, torch.stack(list(means.values())).tolist())) if means else {}  # one host sync
            rate = run.items_seen / max(1e-9, pause - started - paused)
            values.update({"lr": run.learning_rate, f"{method.unit}_per_s": rate, "epoch": state.epoch})
            values.update(getattr(method, "log_values", dict)())
            bar.set_postfix({k: f"{values[k]:.4g}" for k in list(out.losses)[:2]} | {_SHORT_UNITS.get(method.unit, method.unit): f"{rate:.0f}"})
            accelerator.log(values, step=state.step)
            window.reset()
        epoch_done = run.batches_per_epoch is not None and state.batches_in_epoch >= run.batches_per_epoch
        if every.evaluate(state.step) or (epoch_done and getattr(method, "evaluate_every_epoch", False)):
            metrics = method.evaluate()
            if metrics:
                accelerator.log(metrics, step=state.step)
        if every.sample(state.step) and accelerator.is_main_process and hasattr(method, "write_samples"):
            method.write_samples(run.output_dir / "samples" / f"step-{state.step:08d}.png")
        if every.save(state.step):
            _checkpoint(run, stateful, unchecked)
        paused += time.perf_counter() - pause
        if getattr(method, "should_stop", False):
            break
    train_seconds = time.perf_counter() - started - paused
    bar.close()

    before_final = getattr(method, "before_final_checkpoint", None)
    if before_final is not None:  # e.g. the classifier's last validation, so the final checkpoint holds its outcome
        before_final()
    _checkpoint(run, stateful, unchecked)
    results.update({
        f"train_{method.unit}_per_s": run.items_seen / train_seconds if run.items_seen and train_seconds > 0 else None,
        "train_seconds": train_seconds,
        "steps": state.step,
        "mixed_precision": precision,
        "mixed_precision_reason": reason,
    })  # fmt: skip
    final = method.finish(results)  # final evaluation (every process), figures into results
    accelerator.log({k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=state.step)
    files = dict(final.files)
    if accelerator.is_main_process:
        if hasattr(method, "write_samples"):
            method.write_samples(run.output_dir / "samples" / "final.png")
            if (run.output_dir / "samples" / "final.png").is_file():
                (run.output_dir / "sample_grid.png").write_bytes((run.output_dir / "samples" / "final.png").read_bytes())
        write_json_atomic(run.output_dir / "eval_results.json", shareable_tree(results))
        if final.tokenizer is not None:
            final.tokenizer.save_pretrained(run.output_dir)
            scrub_config_files(run.output_dir, recursive=False)  # tokenizer_config.json
        if final.card_family is not None:
            from ..hub import render_model_card

            files["README.md"] = render_model_card(final.card_family, recipe=recipe, model=accelerator.unwrap_model(final.model),
                                                   results=_card_results(results), pipeline_tag=final.pipeline_tag)
    save_final_model(accelerator, final.model, run.output_dir, files if accelerator.is_main_process else None, prepared=run.models)
    after_save = getattr(method, "after_final_save", None)
    if after_save is not None:
        after_save()
    # Drop the DDP-wrapped models while the process group is alive: torn down after end_training() destroys the
    # group, a gloo reducer could block forever at exit.
    del final, method
    run.models, run.optimizers, run.schedulers = [], [], []
    accelerator.free_memory()
    accelerator.end_training()
    return run.output_dir


def _checkpoint(run: TrainingRun, stateful: dict, unchecked: _Window) -> None:
    """Write a checkpoint only when the losses since the last check and every model weight are finite."""
    accelerator = run.accelerator
    if unchecked.batches:
        check_finite(accelerator, unchecked.means(), run.state.step, run.output_dir)
        unchecked.reset()
    check_weights_finite(accelerator, run.models, run.state.step, run.output_dir)
    sync_buffers(accelerator, *run.models)
    save_checkpoint(run, stateful)


def _card_results(results: dict) -> dict:
    """The figures worth a row in the model card table (no matrices, lists or bookkeeping)."""
    return {k: v for k, v in results.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


class _Cadence:
    """Which optimizer steps log, evaluate, sample and save (`train.*_every`; the last step always logs)."""

    def __init__(self, train, total_steps: int):
        self.train, self.total = train, total_steps

    @staticmethod
    def _due(every: int | None, step: int) -> bool:
        return bool(every) and step % every == 0

    def log(self, step: int) -> bool:
        return self._due(self.train.log_every, step) or step == self.total

    def evaluate(self, step: int) -> bool:  # the final evaluation is the method's own (finish)
        return self._due(self.train.eval_every, step) and step < self.total

    def sample(self, step: int) -> bool:
        return self._due(self.train.sample_every, step)

    def save(self, step: int) -> bool:  # the final checkpoint is always written after the loop
        return self._due(self.train.save_every, step) and step < self.total


__all__ = ["Final", "Step", "TrainingRun", "train"]
