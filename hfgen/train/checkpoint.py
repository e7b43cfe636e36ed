"""Output folders, resumable checkpoints and the final model save.

Layout of `train.output_dir`:

    config.json, model.safetensors, README.md, ...   the final model (save_pretrained), when finished
    checkpoints/checkpoint-00000500/                  accelerator.save_state + train_state.json
    samples/, logs/, recipe.yaml, eval_results.json

A checkpoint is written to a temporary folder and renamed into place once every process has
finished writing, so a run killed mid-write never leaves a folder that looks complete; the
final model's config.json is moved in last, so an output_dir "holds a finished run" exactly
when its config.json exists.

With `hub.push_checkpoints`, the dispatcher (hfgen.train.run) installs a callback with
`on_checkpoint_saved` that mirrors each saved checkpoint to a Hub branch, and `resume: auto` on an
output_dir without checkpoints fetches the newest one from that branch: a run on a machine that
disappears goes on elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path

from accelerate import Accelerator

from ..config import Recipe, save_recipe
from ..hub import prepare_for_hub

logger = logging.getLogger("hfgen")

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class OutputDirError(RuntimeError):
    """The output folder cannot be used as the recipe asks."""


@dataclass
class TrainState:
    """Where the loop is: registered with the Accelerator so it is saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch in progress
    batches_in_epoch: int = 0  # batches of that epoch already consumed (per process)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.step, self.epoch, self.batches_in_epoch = state["step"], state["epoch"], state["batches_in_epoch"]


def checkpoints_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of interrupted writes are ignored)."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def is_finished(output_dir: str | os.PathLike) -> bool:
    return (Path(output_dir) / "config.json").is_file()


def prepare_output_dir(recipe: Recipe, accelerator: Accelerator) -> Path | None:
    """Create `train.output_dir`, apply the overwrite/resume rules, save the resolved recipe,
    and return the checkpoint to resume from (None: start fresh)."""
    train = recipe.train
    out = Path(train.output_dir)
    resume_from = None
    if train.resume not in ("auto", "never"):
        resume_from = Path(train.resume)
        if not (resume_from / "train_state.json").is_file():
            raise OutputDirError(
                f"{recipe.source}: train.resume: {str(resume_from)!r} is not a complete hfgen checkpoint "
                "(no train_state.json); use 'auto', 'never' or a checkpoints/checkpoint-N folder"
            )
    elif is_finished(out) and not train.overwrite:
        raise OutputDirError(
            f"{recipe.source}: train.output_dir {str(out)!r} already holds a finished run (config.json); "
            "set train.overwrite=true to replace it, choose another train.output_dir, or set "
            "train.resume to one of its checkpoints to train further"
        )
    elif train.overwrite:
        if accelerator.is_main_process and out.exists():
            for name in ("checkpoints", "samples", "logs"):
                shutil.rmtree(out / name, ignore_errors=True)
            (out / "config.json").unlink(missing_ok=True)
    elif train.resume == "auto":
        existing = list_checkpoints(out)
        if not existing and recipe.hub.push_checkpoints:  # a fresh machine: continue from the Hub branch
            if accelerator.is_main_process:
                from ..hub import download_latest_checkpoint

                download_latest_checkpoint(recipe.hub, out)
            accelerator.wait_for_everyone()
            existing = list_checkpoints(out)
        resume_from = existing[-1] if existing else None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, out / "recipe.yaml")
    accelerator.wait_for_everyone()
    return resume_from


def save_checkpoint(accelerator: Accelerator, output_dir: str | os.PathLike, state: TrainState, keep_last: int) -> Path:
    """Save everything `resume` needs (models, optimizers, schedulers, registered objects such as
    EMA and TrainState, every process's RNG) as checkpoints/checkpoint-<step>, atomically, and
    keep only the newest `keep_last`. Every process must call this."""
    root = checkpoints_dir(output_dir)
    final = root / f"checkpoint-{state.step:08d}"
    tmp = root / f".tmp-checkpoint-{state.step:08d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-checkpoint-*"):  # left behind by a run killed mid-write
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)  # re-saving the same step (e.g. end of a resumed run)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(tmp / "train_state.json", state.state_dict())
        os.replace(tmp, final)
        for old in list_checkpoints(output_dir)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
        callback = _ON_CHECKPOINT_SAVED.get()
        if callback is not None:
            callback(final)
    accelerator.wait_for_everyone()
    return final


_ON_CHECKPOINT_SAVED: ContextVar[Callable[[Path], None] | None] = ContextVar("hfgen_on_checkpoint_saved", default=None)


@contextmanager
def on_checkpoint_saved(callback: Callable[[Path], None] | None) -> Iterator[None]:
    """Within the block, `save_checkpoint` calls `callback(checkpoint_path)` on the main process once a
    checkpoint is complete (hfgen.train.run uses it to push checkpoints to the Hub)."""
    token = _ON_CHECKPOINT_SAVED.set(callback)
    try:
        yield
    finally:
        _ON_CHECKPOINT_SAVED.reset(token)


def load_checkpoint(accelerator: Accelerator, path: Path, state: TrainState) -> None:
    """Restore a checkpoint written by `save_checkpoint` (state is restored in place)."""
    accelerator.load_state(str(path))
    state.load_state_dict(json.loads((path / "train_state.json").read_text()))
    logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, state.step, state.epoch, state.batches_in_epoch)


def save_final_model(accelerator: Accelerator, model, output_dir: str | os.PathLike, extra_files: dict[str, str] | None = None) -> None:
    """`save_pretrained` the unwrapped model into output_dir (plus text files such as the model
    card), each file moved into place atomically, config.json last. Main process only writes."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out = Path(output_dir)
        tmp = out / ".tmp-final"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped = accelerator.unwrap_model(model)
        prepare_for_hub(unwrapped)  # hfgen's own models ship their code: they load without hfgen too
        unwrapped.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        names = sorted(p.name for p in tmp.iterdir())
        for name in [n for n in names if n != "config.json"] + ["config.json"]:
            if (tmp / name).is_dir() and (out / name).is_dir():  # e.g. sentence-transformers' 1_Pooling/ of an overwritten run
                shutil.rmtree(out / name)
            os.replace(tmp / name, out / name)
        tmp.rmdir()
    accelerator.wait_for_everyone()


def write_json_atomic(path: str | os.PathLike, data) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
