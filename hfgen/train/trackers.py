"""Trackers: the JSONL log every run writes (what the tests read), the trackers `train.report_to` names (hfgen's
`auto` / `jsonl` / `none`, or any of Accelerate's), the recipe as the runs' hyperparameters, and the ids that let a
resumed run go on in the same tracked run (logs/tracker_runs.json). docs/trackers.md is the user's guide."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker, get_available_trackers

from ..config import REPORT_TO_OWN, Recipe, RecipeError, recipe_to_dict, report_to_list
from .checkpoint import write_json_atomic

logger = logging.getLogger("hfgen")

TRACKER_RUNS_FILE = "tracker_runs.json"
"""Under output_dir/logs: the project and the run id of each tracker that can continue a run (wandb, MLflow). Ids
only: a token or a tracking URI (which may carry credentials) is never written."""


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


def tracker_extra(name: str) -> str:
    """The pip extra of hfgen that installs tracker `name`: `pip install 'hfgen[<extra>]'`."""
    return name.replace("_", "-")


def trackers_for(recipe: Recipe) -> list | None:
    """The `log_with` of the run's Accelerator: JSONL (None for `none`), TensorBoard for `auto` when installed, and each
    tracker `train.report_to` names. A named tracker that is not installed is a `RecipeError` naming its pip extra,
    raised before anything is built (Accelerate itself would drop it without a word)."""
    names = report_to_list(recipe.train.report_to)
    if names == ["none"]:
        return None  # not []: Accelerate warns that no tracker is installed
    available = {str(t) for t in get_available_trackers()}
    missing = [name for name in names if name not in REPORT_TO_OWN and name not in available]
    if missing:
        extras = ",".join(tracker_extra(name) for name in missing)
        raise RecipeError(f"{recipe.source}: train.report_to: {', '.join(map(repr, missing))} "
                          f"{'is' if len(missing) == 1 else 'are'} not installed; pip install 'hfgen[{extras}]', "
                          "or take it out of train.report_to")
    trackers: list = [JSONLTracker(os.path.join(recipe.train.output_dir, "logs"))]
    if "auto" in names and "tensorboard" in available:
        trackers.append("tensorboard")
    trackers += [name for name in names if name not in REPORT_TO_OWN and name not in trackers]
    return trackers


def start_tracking(accelerator: Accelerator, recipe: Recipe, resumed: bool) -> None:
    """Start the trackers, named `train.project` / `train.run_name`, with the flattened recipe as hyperparameters.

    A run `resumed` from a checkpoint goes on in the wandb and MLflow runs recorded in logs/tracker_runs.json (same
    project); a fresh one starts new runs there and records their ids. TensorBoard and JSONL append to logs/ anyway.
    """
    train = recipe.train
    logs = Path(train.output_dir) / "logs"
    run_name = train.run_name or Path(train.output_dir).resolve().name
    names = [str(t) for t in accelerator.log_with if not isinstance(t, GeneralTracker)]
    recorded = _read_tracker_runs(logs, train.project) if resumed else {}
    earlier = {name: run_id for name, run_id in recorded.items() if name in names}
    if accelerator.is_main_process:
        logs.mkdir(parents=True, exist_ok=True)
        if "mlflow" in earlier and not _mlflow_run_exists(earlier["mlflow"]):
            logger.warning("MLflow run %s (logs/%s) is not on this tracking server; starting a new run",
                           earlier.pop("mlflow"), TRACKER_RUNS_FILE)
    init_kwargs = {name: _init_kwargs(name, run_name, earlier.get(name), logs) for name in names}
    flat = _flatten(recipe_to_dict(recipe))
    config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
    # MLflow refuses to change a logged parameter, and a resumed recipe may differ (train.resume, a longer
    # max_steps): a continued MLflow run keeps the parameters of its first start; the others take the new ones.
    continued_mlflow = "mlflow" in earlier
    accelerator.init_trackers(train.project, config=None if continued_mlflow else config, init_kwargs=init_kwargs)
    if not accelerator.is_main_process:
        return
    if continued_mlflow:
        for tracker in accelerator.trackers:
            if tracker.name != "mlflow":
                tracker.store_init_configuration(config)
    # Written on every start, so a fresh run never inherits the ids of an earlier one in the same folder; a resumed
    # run keeps the ids of trackers it does not use this time.
    runs = {tracker.name: run_id for tracker in accelerator.trackers if (run_id := _run_id(tracker)) is not None}
    write_json_atomic(logs / TRACKER_RUNS_FILE, {"project": train.project, "runs": {**recorded, **runs}})


def _init_kwargs(name: str, run_name: str, run_id: str | None, logs: Path) -> dict:
    """What tracker `name` takes at start: the run's name, and the run to continue (`run_id`, or None for a new one)."""
    if name == "wandb":  # wandb.init(...)
        kwargs = {"name": run_name}
        if "WANDB_DIR" not in os.environ:  # wandb's own files (offline runs too) beside the run's other logs
            kwargs["dir"] = str(logs)
        if run_id is not None:
            kwargs.update(id=run_id, resume="allow")
        return kwargs
    if name == "mlflow":  # accelerate's MLflowTracker; MLFLOW_RUN_ID / MLFLOW_EXPERIMENT_NAME take precedence
        return {"run_name": run_name} if run_id is None else {"run_name": run_name, "run_id": run_id}
    if name == "clearml":  # Task.init(task_name=...); the project stays `train.project`
        return {"task_name": run_name}
    return {}  # TensorBoard writes to logs/<project>; the other trackers name their runs themselves


def _run_id(tracker: GeneralTracker) -> str | None:
    """The id a later start can continue with, for the trackers that can (wandb, MLflow)."""
    if tracker.name == "wandb":
        return tracker.tracker.id
    if tracker.name == "mlflow":
        return tracker.tracker.info.run_id
    return None


def _read_tracker_runs(logs: Path, project: str) -> dict[str, str]:
    """The run ids recorded at the first start, if it was under the same `project`; {} when there are none."""
    try:
        recorded = json.loads((logs / TRACKER_RUNS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict) or recorded.get("project") != project:
        return {}
    runs = recorded.get("runs")
    return {name: run_id for name, run_id in runs.items() if isinstance(run_id, str)} if isinstance(runs, dict) else {}


def _mlflow_run_exists(run_id: str) -> bool:
    import mlflow

    try:
        mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return False
    return True


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
