"""Trackers: the JSONL log every run writes (what the tests read), TensorBoard when installed, and the recipe
as the runs' hyperparameters."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker

from ..config import Recipe, recipe_to_dict


class JSONLTracker(GeneralTracker):
    """An Accelerate tracker that appends `{"step": ..., **values}` lines to logs/metrics.jsonl:
    readable without TensorBoard, and what the tests read."""

    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, logging_dir: str | os.PathLike):
        super().__init__()
        self.path = Path(logging_dir) / "metrics.jsonl"

    @property
    def tracker(self):
        return self.path

    def start(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def store_init_configuration(self, values: dict):
        self.start()
        (self.path.parent / "hparams.json").write_text(json.dumps(values, indent=2, default=str))

    def log(self, values: dict, step: int | None = None, **kwargs):
        self.start()
        scalars = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in values.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 3), **scalars}) + "\n")


def trackers_for(recipe: Recipe) -> list:
    """The trackers `report_to` asks for: JSONL always (unless none), TensorBoard when installed."""
    report_to = recipe.train.report_to
    if report_to == "none":
        return []
    trackers: list = [JSONLTracker(os.path.join(recipe.train.output_dir, "logs"))]
    has_tensorboard = importlib.util.find_spec("tensorboard") is not None
    if report_to == "tensorboard" and not has_tensorboard:
        raise ImportError(f"{recipe.source}: train.report_to is 'tensorboard' but tensorboard is not installed")
    if report_to in ("tensorboard", "auto") and has_tensorboard:
        trackers.append("tensorboard")
    return trackers


def start_tracking(accelerator: Accelerator, recipe: Recipe) -> None:
    """Initialise the trackers with the flattened recipe as hyperparameters."""
    flat = _flatten(recipe_to_dict(recipe))
    accelerator.init_trackers("hfgen", config={k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()})


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
