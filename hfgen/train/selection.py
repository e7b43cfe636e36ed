"""Best-model selection and early stopping, for any method that evaluates during training.

`ModelSelection` remembers the best value of one metric, the step it was reached at and how many
evaluations have passed without improvement; it is saved in every checkpoint (JSON), so a resumed
run continues with the same best value and patience. The best weights themselves live in
``output_dir/best/`` (written atomically by `save_best_model`), and `load_best_model` puts them
back into the model before the final save.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from accelerate import Accelerator

from ..metrics.classification import LOWER_IS_BETTER
from .checkpoint import safetensors_device
from .model_setup import load_adapter_weights, lora_adapter, save_adapter
from .sharding import load_full_state, local_tensor, submodule_state

logger = logging.getLogger("hfgen")

BEST_DIR = "best"


def metric_greater_is_better(metric: str) -> bool:
    """False for losses and errors (``loss``, ``mse``, ``rmse``, ``mae``, ``hamming_loss``), True otherwise."""
    return metric.removeprefix("eval_") not in LOWER_IS_BETTER


@dataclass
class ModelSelection:
    """Tracks the best evaluation of ``metric`` and the patience left.

    Example:
        >>> selection = ModelSelection("accuracy", greater_is_better=True, patience=2)
        >>> selection.update({"accuracy": 0.8}, step=100)
        True
        >>> selection.update({"accuracy": 0.79}, step=200), selection.should_stop
        (False, False)
    """

    metric: str
    greater_is_better: bool = True
    patience: int | None = None  # evaluations without improvement before stopping; None: never stop
    threshold: float = 0.0  # an improvement must beat the best by more than this
    best_value: float | None = None
    best_step: int | None = None
    evaluations_without_improvement: int = 0

    def update(self, metrics: dict[str, float], step: int) -> bool:
        """Record one evaluation; True when it is the new best (the caller then saves the model)."""
        name = self.metric.removeprefix("eval_")
        if name not in metrics:
            raise KeyError(f"metric_for_best_model {self.metric!r} is not among the evaluation metrics {sorted(metrics)}")
        value = float(metrics[name])
        if self.best_value is None:
            improved = True
        elif self.greater_is_better:
            improved = value > self.best_value + self.threshold
        else:
            improved = value < self.best_value - self.threshold
        if improved:
            self.best_value, self.best_step, self.evaluations_without_improvement = value, step, 0
        else:
            self.evaluations_without_improvement += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.evaluations_without_improvement >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def save_best_model(accelerator: Accelerator, model, output_dir: str | os.PathLike, extra=None) -> Path:
    """`save_pretrained` the unwrapped model (and ``extra``, e.g. a tokenizer, when given) into
    ``output_dir/best``, replacing the previous best atomically. Every process must call this."""
    final = Path(output_dir) / BEST_DIR
    accelerator.wait_for_everyone()
    gathered = submodule_state(accelerator, [model], accelerator.unwrap_model(model))  # FSDP: from the shards; DDP: None
    if accelerator.is_main_process:
        tmp = Path(output_dir) / f".tmp-{BEST_DIR}"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped = accelerator.unwrap_model(model)
        adapter = lora_adapter(unwrapped)
        if adapter is not None:  # LoRA: the adapter and head are all that train; load_best_model puts them back
            save_adapter(adapter, tmp)
        else:
            unwrapped.save_pretrained(tmp, state_dict=gathered)
        if extra is not None:
            extra.save_pretrained(tmp)
        old = Path(output_dir) / f".old-{BEST_DIR}"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def best_model_checkpoint_hooks(accelerator: Accelerator, output_dir: str | os.PathLike):
    """(save, load) hooks for the engine's checkpoints (`TrainingRun.checkpoint_hooks`): every checkpoint carries the
    best model as it was at that step, and loading a checkpoint puts it back into ``output_dir/best``, so a resumed
    run (from ``resume: auto`` or from a checkpoint of another folder) selects exactly as the uninterrupted one. The
    files are hard links into ``output_dir/best`` (no extra disk; `save_best_model` replaces the folder, never
    rewrites its files), written into the checkpoint before it is renamed into place."""
    best = Path(output_dir) / BEST_DIR

    def save_hook(checkpoint_dir) -> None:
        if accelerator.is_main_process and best.is_dir():
            _link_tree(best, Path(checkpoint_dir) / BEST_DIR)

    def load_hook(checkpoint_dir) -> None:
        if accelerator.is_main_process:
            _restore_best(Path(checkpoint_dir) / BEST_DIR, best)
        accelerator.wait_for_everyone()

    return save_hook, load_hook


def _restore_best(saved: Path, best: Path) -> None:
    if saved.resolve() == best.resolve():
        return
    tmp = best.parent / f".tmp-{BEST_DIR}"
    shutil.rmtree(tmp, ignore_errors=True)
    if saved.is_dir():
        _link_tree(saved, tmp)
    old = best.parent / f".old-{BEST_DIR}"
    shutil.rmtree(old, ignore_errors=True)
    if best.exists():
        os.replace(best, old)
    if tmp.exists():
        os.replace(tmp, best)  # no best in the checkpoint: none yet at that step
    shutil.rmtree(old, ignore_errors=True)


def _link_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.is_file():
            try:
                os.link(file, target / file.name)
            except OSError:  # another file system, or links unsupported
                shutil.copy2(file, target / file.name)


def load_best_model(accelerator: Accelerator, model, output_dir: str | os.PathLike) -> bool:
    """Load the weights of ``output_dir/best`` into the (unwrapped) model on every process; False
    when there is no best model yet."""
    from safetensors.torch import load_file

    unwrapped = accelerator.unwrap_model(model)
    adapter = lora_adapter(unwrapped)
    if adapter is not None:  # a LoRA model saves (and so keeps as its best) the adapter and head only
        if not (Path(output_dir) / BEST_DIR / "adapter_model.safetensors").is_file():
            return False
        load_adapter_weights(adapter, Path(output_dir) / BEST_DIR)
        accelerator.wait_for_everyone()
        return True
    path = Path(output_dir) / BEST_DIR / "model.safetensors"
    if not path.is_file():
        return False
    state = load_file(str(path), device=safetensors_device(local_tensor(next(unwrapped.parameters())).device))
    missing, unexpected = load_full_state(accelerator, model, state, strict=False)
    # save_pretrained leaves out tied weights; anything else missing means a different model
    tied = set(getattr(unwrapped, "_tied_weights_keys", None) or [])  # a list, or a dict keyed by the tied names
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"{path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    accelerator.wait_for_everyone()
    return True
