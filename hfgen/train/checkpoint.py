"""Output folders, resumable checkpoints and the final model save.

Layout of `train.output_dir`:

    config.json, model.safetensors, README.md, ...   the final model (save_pretrained), when finished
    checkpoints/checkpoint-00000500/                  safetensors + JSON only (see save_checkpoint)
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

import torch
from accelerate import Accelerator

from ..config import Recipe, save_recipe
from ..hub import prepare_for_hub
from ..sharing import scrub_config_files, shareable_recipe
from .model_setup import lora_adapter, merge_lora, save_adapter
from .sharding import is_sharded, submodule_state

logger = logging.getLogger("hfgen")

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class OutputDirError(RuntimeError):
    """The output folder cannot be used as the recipe asks."""


@dataclass
class TrainState:
    """Where the loop is; saved in every checkpoint's train_state.json."""

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


def prepare_output_dir(recipe: Recipe, accelerator: Accelerator) -> list[Path]:
    """Create `train.output_dir`, apply the overwrite/resume rules, save the resolved recipe,
    and return the checkpoints to resume from, newest first (empty: start fresh). An explicit `train.resume`
    gives just that one; `auto` gives every complete checkpoint, so a damaged newest one falls back to the
    one before."""
    train = recipe.train
    out = Path(train.output_dir)
    candidates: list[Path] = []
    if train.resume not in ("auto", "never"):
        resume_from = Path(train.resume)
        candidates = [resume_from]
        if not _all_processes_agree(accelerator, (resume_from / "train_state.json").is_file()):  # on every machine
            raise OutputDirError(
                f"{recipe.source}: train.resume: {str(resume_from)!r} is not a complete hfgen checkpoint "
                "(no train_state.json); use 'auto', 'never' or a checkpoints/checkpoint-N folder"
            )
    elif not _all_processes_agree(accelerator, not is_finished(out)) and not train.overwrite:  # one machine's verdict stops all
        raise OutputDirError(
            f"{recipe.source}: train.output_dir {str(out)!r} already holds a finished run (config.json); "
            "set train.overwrite=true to replace it, choose another train.output_dir, or set "
            "train.resume to one of its checkpoints to train further"
        )
    elif train.overwrite:
        if writes_checkpoints(accelerator) and out.exists():
            for name in ("checkpoints", "samples", "logs"):
                shutil.rmtree(out / name, ignore_errors=True)
            (out / "config.json").unlink(missing_ok=True)
    elif train.resume == "auto":
        existing = list_checkpoints(out)
        if not existing and recipe.hub.push_checkpoints:  # a fresh machine: continue from the Hub branch
            problem = None
            if writes_checkpoints(accelerator):  # with save_on_each_node every machine fetches its own copy
                from ..hub import download_checkpoints

                try:
                    download_checkpoints(recipe.hub, out)
                except Exception as err:  # noqa: BLE001 (every process must hear of it, or the others wait forever)
                    problem = f"{type(err).__name__}: {err}"
            if not _all_processes_agree(accelerator, problem is None):
                raise OutputDirError(f"{recipe.source}: could not fetch the checkpoints of {recipe.hub.repo_id} "
                                     f"(branch {recipe.hub.checkpoint_branch}): {problem or 'failed on the main process'}")
            existing = list_checkpoints(out)
        candidates = checkpoints_on_every_machine(accelerator, existing)[::-1]
    accelerator.wait_for_everyone()
    problem = None
    if accelerator.is_main_process:
        try:
            out.mkdir(parents=True, exist_ok=True)
            save_recipe(shareable_recipe(recipe), out / "recipe.yaml")  # pushed with the model: no machine paths
        except OSError as err:  # read-only, no space, a file in the way, no permission
            problem = f"{err.strerror or err}" + (f" ({err.filename})" if err.filename else "")
    if not _all_processes_agree(accelerator, problem is None):  # every process stops, none waits forever
        raise OutputDirError(f"{recipe.source}: train.output_dir {str(out)!r} cannot be written: "
                             f"{problem or 'the main process could not write it'}; choose another train.output_dir")
    return candidates


CHECKPOINT_FORMAT = "hfgen-checkpoint-2"  # safetensors + JSON; version 1 was Accelerate's save_state (pickles)

# Recipe keys whose new value a resumed run takes (the optimizer's settings and the schedule), and keys that fix
# the data position and RNG streams a checkpoint continues, so a changed value is refused.
OPTIMIZER_KEYS = ("learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "lr_scheduler",
                  "warmup_steps", "max_grad_norm")
POSITION_KEYS = ("batch_size", "gradient_accumulation_steps", "seed")
OPTIMIZER_HYPERPARAMETERS = ("lr", "initial_lr", "betas", "eps", "weight_decay")


class CheckpointMismatch(RuntimeError):
    """The recipe changed a key that a checkpoint cannot continue with."""


def _names(prefix: str, count: int) -> list[str]:
    return [prefix if i == 0 else f"{prefix}_{i}" for i in range(count)]


def _recorded_hyperparameters(run) -> dict:
    train, options = run.recipe.train, run.recipe.options
    values = {key: getattr(train, key) for key in OPTIMIZER_KEYS + POSITION_KEYS}
    for key in [f for f in vars(options) if f.endswith("learning_rate")] if options is not None else []:
        values[f"{run.recipe.method}.{key}"] = getattr(options, key)  # e.g. gan.generator_learning_rate
    values["num_processes"] = run.accelerator.num_processes
    values["sharded"] = is_sharded(run.accelerator)  # FSDP names the optimizer's state by parameter, DDP by index
    return values


def save_checkpoint(run, stateful: dict) -> Path:
    """Save everything `resume` needs as checkpoints/checkpoint-<step>, atomically, and keep only the newest
    `train.keep_last`. Every process must call this. Nothing is pickled:

        model.safetensors, model_1.safetensors, ...       each prepared model (unwrapped)
        optimizer.{safetensors,json}, optimizer_1...     optimizer states
        scheduler.{safetensors,json}, ...                schedule positions
        random_states_<rank>.{safetensors,json}          python, numpy and torch RNGs of every process
        <name>.{safetensors,json}                        the method's own state (EMA, model selection, ...)
        train_state.json                                 step, epoch, batch in epoch, the recipe's hyperparameters
    """
    from safetensors.torch import save_file, save_model

    from .sharding import gathered_state, optimizer_state
    from .state_files import capture_rng_state, save_state

    accelerator, state = run.accelerator, run.state
    root = checkpoints_dir(run.output_dir)
    final = root / f"checkpoint-{state.step:08d}"
    tmp = root / f".tmp-checkpoint-{state.step:08d}"
    writer = writes_checkpoints(accelerator)  # the main process; with save_on_each_node, each machine's first
    if writer:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-checkpoint-*"):  # left behind by a run killed mid-write
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    # FSDP: whole weights and optimizer states gathered from the shards (every process takes part), written as a
    # DDP run's are; DDP: each process holds them whole already
    sharded, everywhere = is_sharded(accelerator), _saves_on_each_node(accelerator)
    model_states = [gathered_state(accelerator, model, everywhere) if sharded else None for model in run.models]
    optimizer_states = [optimizer_state(accelerator, model, optimizer, everywhere) if sharded else optimizer.state_dict() if writer else None
                        for model, optimizer in zip(run.models, run.optimizers)]  # fmt: skip
    if writer:
        for name, model, gathered in zip(_names("model", len(run.models)), run.models, model_states):
            if gathered is None:
                save_model(accelerator.unwrap_model(model), str(tmp / f"{name}.safetensors"))
            else:
                save_file(gathered, str(tmp / f"{name}.safetensors"), metadata={"format": "pt"})  # tied names left out: no shared storage
        for name, optimizer_saved in zip(_names("optimizer", len(run.optimizers)), optimizer_states):
            save_state(optimizer_saved, tmp, name)
        for name, scheduler in zip(_names("scheduler", len(run.schedulers)), run.schedulers):
            inner = getattr(scheduler, "scheduler", scheduler)
            save_state({"last_epoch": inner.last_epoch, "_step_count": inner._step_count}, tmp, name)
        if getattr(accelerator, "scaler", None) is not None:
            save_state(accelerator.scaler.state_dict(), tmp, "scaler")
        for name, obj in stateful.items():
            save_state(obj.state_dict(), tmp, name)
        for save_hook, _ in run.checkpoint_hooks:
            save_hook(tmp)
    save_state(capture_rng_state(), tmp, f"random_states_{accelerator.process_index}")
    accelerator.wait_for_everyone()
    if writer:
        write_json_atomic(tmp / "train_state.json", {
            **state.state_dict(), "format": CHECKPOINT_FORMAT, "hyperparameters": _recorded_hyperparameters(run),
        })  # fmt: skip
        shutil.rmtree(final, ignore_errors=True)  # re-saving the same step (e.g. the end of a resumed run)
        os.replace(tmp, final)
        keep_last = run.train.keep_last
        for old in list_checkpoints(run.output_dir)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
        callback = _ON_CHECKPOINT_SAVED.get()
        if callback is not None and accelerator.is_main_process:  # one push, from the main machine
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


def resume_from_checkpoint(run, candidates: list[Path], stateful: dict) -> bool:
    """Restore the newest readable checkpoint of `candidates` (newest first) into the run, in place; False when
    there is none to restore. A damaged checkpoint (truncated or foreign file) is refused by name, with a
    warning, and the previous one is tried; every file is read and checked before any state is changed."""
    from .state_files import CheckpointFileError

    accelerator = run.accelerator
    for index, path in enumerate(candidates):
        try:
            contents, problem = _read_checkpoint(run, path, stateful), None
        except CheckpointFileError as err:
            contents, problem = None, str(err)
        if _all_processes_agree(accelerator, problem is None):
            _apply_checkpoint(run, path, contents, stateful)
            return True
        older = candidates[index + 1 :]
        message = problem or f"another process could not read {path}"
        if not older:
            raise CheckpointFileError(f"cannot resume: {message}; no older complete checkpoint to fall back to "
                                      "(train.resume: never starts afresh)")
        logger.warning("refusing checkpoint %s: %s; falling back to %s", path, message, older[0])
        _set_aside(accelerator, path)
    return False


def _set_aside(accelerator, path: Path) -> None:
    """Rename a refused checkpoint of this run to `.refused-checkpoint-N`: no longer listed, so pruning keeps the
    good ones and later resumes do not try it again; kept on disk for inspection."""
    if writes_checkpoints(accelerator) and path.parent == checkpoints_dir(path.parent.parent) and CHECKPOINT_RE.match(path.name):
        target = path.with_name(f".refused-{path.name}")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(path, target)
    accelerator.wait_for_everyone()


def _saves_on_each_node(accelerator) -> bool:
    return bool(getattr(accelerator.project_configuration, "save_on_each_node", False))


def writes_checkpoints(accelerator) -> bool:
    """Whether this process writes (and renames, prunes, sets aside) the checkpoint folders: the main process, or with
    `train.save_on_each_node` the first process of every machine, into that machine's own `output_dir`."""
    return accelerator.is_local_main_process if _saves_on_each_node(accelerator) else accelerator.is_main_process


def checkpoints_on_every_machine(accelerator, local: list[Path]) -> list[Path]:
    """The checkpoints of `local` (this process's listing, oldest first) that every process also lists, so that all
    resume from the same step: machines without a shared filesystem each list their own disk, and one that died
    mid-write, or was added later, holds fewer. What some process lacks is named in a warning."""
    if accelerator.num_processes == 1:
        return local
    import torch

    steps = [int(CHECKPOINT_RE.match(p.name).group(1)) for p in local]
    mine = torch.tensor(steps, dtype=torch.long, device=accelerator.device)
    padded = accelerator.pad_across_processes(mine, dim=0, pad_index=-1)  # every listing as long as the longest
    listed = [{step for step in row if step >= 0} for row in accelerator.gather(padded[None]).cpu().tolist()]
    anywhere = set().union(*listed)
    common = set.intersection(*listed)
    if anywhere != common and accelerator.is_main_process:
        detail = "; ".join(f"process {rank} lacks step(s) {', '.join(map(str, sorted(anywhere - held)))}"
                           for rank, held in enumerate(listed) if held != anywhere)
        hint = "" if _saves_on_each_node(accelerator) else "; machines that share no filesystem need train.save_on_each_node: true"
        logger.warning("checkpoints differ between processes (%s): resuming from the newest that every process holds%s%s",
                       detail, f" (step {max(common)})" if common else " (none: starting afresh)", hint)
    return [p for p, step in zip(local, steps) if step in common]


def _all_processes_agree(accelerator, ok: bool) -> bool:
    if accelerator.num_processes == 1:
        return ok
    import torch

    flag = torch.tensor([1.0 if ok else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() == accelerator.num_processes)


def _read_checkpoint(run, path: Path, stateful: dict) -> dict:
    """Every piece of state of checkpoint `path`, read into memory (nothing unpickled), or CheckpointFileError."""
    from safetensors import SafetensorError, safe_open

    from .state_files import CheckpointFileError, load_state

    accelerator = run.accelerator
    try:
        train_state = json.loads((path / "train_state.json").read_text())
    except (OSError, ValueError) as err:
        raise CheckpointFileError(f"{path / 'train_state.json'} is missing or damaged: {err}") from err
    if train_state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointFileError(
            f"{path} was written by an older hfgen (Accelerate's pickled state); hfgen no longer unpickles checkpoints. "
            "Start afresh (train.resume: never) or resume with the hfgen version that wrote it"
        )
    _check_hyperparameters(run, train_state.get("hyperparameters", {}), path)  # a mismatch is refused, not "damage"
    contents: dict = {"train_state": train_state, "optimizers": [], "schedulers": [], "stateful": {}}
    for name in _names("model", len(run.models)):
        file = path / f"{name}.safetensors"
        try:
            with safe_open(str(file), "pt"):  # the header and the file's length are checked; the weights load once, in apply
                pass
        except (SafetensorError, OSError) as err:
            raise CheckpointFileError(f"{file} is missing or damaged: {err}") from err
    contents["optimizers"] = [load_state(path, name) for name in _names("optimizer", len(run.optimizers))]
    contents["schedulers"] = [load_state(path, name) for name in _names("scheduler", len(run.schedulers))]
    optional = {name: name for name in stateful}
    if getattr(accelerator, "scaler", None) is not None:
        optional["scaler"] = "scaler"
    for name in optional:
        if (path / f"{name}.json").is_file():
            contents["stateful"][name] = load_state(path, name, device=accelerator.device)
        else:  # e.g. gan.ema_decay switched on, or fp16 now and not then: that state starts afresh
            logger.warning("checkpoint %s holds no %r state; it starts afresh", path.name, name)
            contents["stateful"][name] = None
    rng_name = f"random_states_{accelerator.process_index}"
    contents["rng"] = load_state(path, rng_name)
    if not isinstance(contents["rng"], dict) or not {"python", "numpy", "torch"} <= set(contents["rng"]):
        raise CheckpointFileError(f"{path / (rng_name + '.json')} does not hold the random states hfgen writes")
    return contents


def _apply_checkpoint(run, path: Path, contents: dict, stateful: dict) -> None:
    from safetensors.torch import load_file, load_model

    from .sharding import load_full_state, load_optimizer_state

    from .state_files import restore_rng_state

    accelerator = run.accelerator
    saved = contents["train_state"]
    for name, model in zip(_names("model", len(run.models)), run.models):
        file = str(path / f"{name}.safetensors")
        if is_sharded(accelerator):  # every process reads the whole weights and keeps its shard
            load_full_state(accelerator, model, load_file(file), strict=True)
        else:
            load_model(accelerator.unwrap_model(model), file, strict=True, device=safetensors_device(accelerator.device))
    for model, optimizer, state in zip(run.models, run.optimizers, contents["optimizers"]):
        # the recipe's current settings win over the checkpoint's (a lowered learning rate takes effect)
        current = [{key: group[key] for key in OPTIMIZER_HYPERPARAMETERS if key in group} for group in optimizer.param_groups]
        load_optimizer_state(accelerator, model, optimizer, state)
        for group, values in zip(optimizer.param_groups, current):
            group.update(values)
    for scheduler, state in zip(run.schedulers, contents["schedulers"]):
        inner = getattr(scheduler, "scheduler", scheduler)
        inner.last_epoch, inner._step_count = state["last_epoch"], state["_step_count"]
        lrs = [base * factor(inner.last_epoch) for factor, base in zip(inner.lr_lambdas, inner.base_lrs)]
        for group, lr in zip(inner.optimizer.param_groups, lrs):
            group["lr"] = lr
        inner._last_lr = lrs
    if contents["stateful"].get("scaler") is not None:
        accelerator.scaler.load_state_dict(contents["stateful"]["scaler"])
    for name, obj in stateful.items():
        if contents["stateful"][name] is not None:
            obj.load_state_dict(contents["stateful"][name])
    for _, load_hook in run.checkpoint_hooks:
        load_hook(path)
    run.state.load_state_dict(saved)
    restore_rng_state(contents["rng"])
    logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, run.state.step, run.state.epoch, run.state.batches_in_epoch)


def _check_hyperparameters(run, saved: dict, path: Path) -> None:
    """Refuse a changed key that fixes the data position; log every optimizer setting that now differs."""
    current = _recorded_hyperparameters(run)
    source = run.recipe.source
    for key in POSITION_KEYS + ("num_processes", "sharded"):
        if key in saved and saved[key] != current[key]:
            if key == "sharded":
                engines = ("FSDP", "DDP") if saved[key] else ("DDP", "FSDP")
                raise CheckpointMismatch(
                    f"{source}: checkpoint {path} was written under {engines[0]} and this launch runs {engines[1]}: resume "
                    f"it with the {engines[0]} launch it was written with, or start a new run (another train.output_dir, or "
                    "train.resume: never). Its model.safetensors is an ordinary full state dict either way"
                )
            where = "the launch's process count" if key == "num_processes" else f"train.{key}"
            raise CheckpointMismatch(
                f"{source}: {where} is {current[key]!r} but checkpoint {path} was written with {saved[key]!r}: the data "
                f"position and random streams it continues depend on it. Set it back to {saved[key]!r}, or start a "
                "new run (another train.output_dir, or train.resume: never)"
            )
    for key in [k for k in current if k in OPTIMIZER_KEYS or "." in k]:
        if key in saved and saved[key] != current[key]:
            name = key if "." in key else f"train.{key}"
            logger.warning("%s is %r in the recipe but %r in %s: training continues with %r",
                           name, current[key], saved[key], path.name, current[key])


def safetensors_device(device) -> str:
    """`device` as safetensors names it: Accelerate gives a multi-machine CPU launch "cpu:<local rank>", which
    safetensors refuses (CPU has no index)."""
    device = torch.device(device)
    return "cpu" if device.type == "cpu" else str(device)


def save_final_model(accelerator: Accelerator, model, output_dir: str | os.PathLike, extra_files: dict[str, str] | None = None,
                     prepared: list | None = None) -> None:
    """`save_pretrained` the unwrapped model into output_dir (plus text files such as the model
    card), each file moved into place atomically, config.json (a pipeline's model_index.json) last, so a folder
    that has one is whole. Main process only writes; every process calls it. Under FSDP the weights are gathered
    from the shards of `prepared` (the prepared models that `model` is, or is part of: e.g. an MLM objective's
    encoder), so the folder is the same ordinary one a DDP run writes."""
    accelerator.wait_for_everyone()
    gathered = submodule_state(accelerator, prepared or [model], accelerator.unwrap_model(model))
    if accelerator.is_main_process:
        out = Path(output_dir)
        tmp = out / ".tmp-final"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped = accelerator.unwrap_model(model)
        adapter = lora_adapter(unwrapped)
        if adapter is not None:  # LoRA: the adapter alone in adapter/, the merged stock model at the root
            save_adapter(adapter, tmp / "adapter")
            unwrapped = merge_lora(unwrapped)
        prepare_for_hub(unwrapped)  # hfgen's own models ship their code: they load without hfgen too
        unwrapped.save_pretrained(tmp, state_dict=gathered)
        scrub_config_files(tmp)  # e.g. a sub-config's _name_or_path: where this machine loaded the encoder from
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        names = sorted(p.name for p in tmp.iterdir())
        last = [n for n in ("config.json", "model_index.json") if n in names]
        for name in [n for n in names if n not in last] + last:
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
