"""Trackers (`train.report_to`, `train.project`, `train.run_name`; docs/trackers.md): the names a recipe may give,
a missing package named with its pip extra, TensorBoard / MLflow / wandb each receiving a tiny GAN run's losses
(offline: an MLflow file store and wandb's offline mode), and a resumed run going on in the same tracked runs."""

import json
import re
import sys
from pathlib import Path

import pytest

from hfgen.config import RecipeError, load_recipe, report_to_names
from hfgen.train import run

from .helpers import kill_after_checkpoint, read_metrics, restore_checkpointing

TINY = ("train.max_steps=4", "train.save_every=2", "train.sample_every=null")  # 4 steps, a checkpoint at 2


@pytest.fixture
def offline_trackers(tmp_path, monkeypatch):
    """MLflow on a file store and wandb offline, every file of theirs under tmp_path; yields (mlruns, wandb dir)."""
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TAGS",
                "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_NAME", "WANDB_RESUME"):
        monkeypatch.delenv(key, raising=False)
    mlruns, wandb_dir = tmp_path / "mlruns", tmp_path / "wandb-files"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlruns.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses a file store unless told
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key.lower()))
    wandb_dir.mkdir()
    yield mlruns, wandb_dir
    if "wandb" in sys.modules:  # wandb keeps its settings (WANDB_DIR included) per process: drop them for the next test
        sys.modules["wandb"].teardown()


def tracker_runs(out) -> dict:
    return json.loads((Path(out) / "logs" / "tracker_runs.json").read_text())


def mlflow_runs(experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient()
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def wandb_offline_runs(wandb_dir) -> list[Path]:
    return sorted((Path(wandb_dir) / "wandb").glob("offline-run-*"))


# --- recipe names -------------------------------------------------------------------------------


def test_report_to_takes_every_accelerate_tracker_one_or_a_list(write_recipe):
    names = report_to_names()
    assert {"auto", "jsonl", "none", "tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive",
            "swanlab", "trackio"} <= set(names) and "all" not in names
    assert load_recipe(write_recipe("gan", "train.report_to=wandb")).train.report_to == "wandb"
    assert load_recipe(write_recipe("gan", "train.report_to=[wandb, jsonl]")).train.report_to == ["wandb", "jsonl"]
    train = load_recipe(write_recipe("gan")).train
    assert (train.report_to, train.project, train.run_name) == ("auto", "hfgen", None)


@pytest.mark.parametrize("override, message", [
    ("train.report_to=wandbb", r"recipe\.yaml: train\.report_to: 'wandbb' is not a tracker; did you mean 'wandb'\?; "
                               r"valid names: \['auto', 'jsonl', 'none', .*'mlflow'"),
    ("train.report_to=[jsonl, tensorbord]", r"train\.report_to: 'tensorbord' is not a tracker; did you mean 'tensorboard'"),
    ("train.report_to=[none, wandb]", r"train\.report_to: 'none' turns every tracker off.*\['wandb'\]"),
    ("train.report_to=[]", r"train\.report_to: \[\] names no tracker; use 'none'"),
    ("train.report_to=3", r"train\.report_to: expected str \| list\[str\], got 3"),
    ("train.project=team/hfgen", r"train\.project: 'team/hfgen' must start with a letter or digit"),
    ("train.run_name=' '", r"train\.run_name: an empty name"),
])
def test_bad_tracker_settings_are_recipe_errors_naming_the_key(write_recipe, override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(write_recipe("gan", override, name="recipe.yaml"))


def test_every_accelerate_tracker_has_the_pip_extra_its_error_names():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from hfgen.config import REPORT_TO_OWN
    from hfgen.train.trackers import tracker_extra

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    missing = [name for name in report_to_names() if name not in REPORT_TO_OWN and tracker_extra(name) not in extras]
    assert not missing, f"pyproject.toml has no extra for {missing}"


def test_a_missing_tracker_stops_the_script_with_its_pip_extra(write_recipe, tmp_path, monkeypatch, capsys):
    import hfgen.train.trackers as trackers
    from hfgen.cli import pretrain_main

    monkeypatch.setattr(trackers, "get_available_trackers", lambda: [])  # as if neither package were installed
    recipe = write_recipe("gan", "train.report_to=[jsonl, wandb, comet_ml]", name="recipe.yaml")
    with pytest.raises(SystemExit) as exited:
        pretrain_main(["--recipe", str(recipe)])
    assert exited.value.code == 2  # hfgen.errors: the recipe
    err = capsys.readouterr().err
    assert "train.report_to: 'wandb', 'comet_ml' are not installed; pip install 'hfgen[wandb,comet-ml]'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was built


# --- each tracker gets the run ------------------------------------------------------------------


def test_auto_writes_jsonl_and_tensorboard_under_the_project(write_recipe):
    pytest.importorskip("tensorboard")
    out = run(load_recipe(write_recipe("gan", *TINY, "train.project=tiny-gan")))
    assert [m["step"] for m in read_metrics(out) if "g_loss" in m] == [1, 2, 3, 4]
    assert list((out / "logs" / "tiny-gan").glob("events.out.tfevents.*"))
    assert tracker_runs(out) == {"project": "tiny-gan", "runs": {}}  # nothing to continue for TensorBoard / JSONL


def test_none_writes_no_logs(write_recipe):
    out = run(load_recipe(write_recipe("gan", "train.max_steps=2", "train.save_every=null", "train.sample_every=null",
                                       "train.report_to=none")))
    assert not (out / "logs" / "metrics.jsonl").exists() and not (out / "logs" / "hfgen").exists()


def test_mlflow_run_holds_the_training_losses_and_the_recipe(write_recipe, offline_trackers):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    out = run(load_recipe(write_recipe("gan", *TINY, "train.report_to=mlflow", "train.project=tiny-gan",
                                       "train.run_name=first try")))
    (found,) = mlflow_runs("tiny-gan")
    assert found.info.run_name == "first try" and found.info.status == "FINISHED"
    history = MlflowClient().get_metric_history(found.info.run_id, "g_loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert found.data.params["train.max_steps"] == "4" and found.data.params["method"] == "gan"
    assert tracker_runs(out) == {"project": "tiny-gan", "runs": {"mlflow": found.info.run_id}}
    assert [m["step"] for m in read_metrics(out) if "g_loss" in m] == [1, 2, 3, 4]  # JSONL is kept beside it


def test_wandb_offline_run_is_left_in_the_logs_named_after_the_output_dir(write_recipe, offline_trackers, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_DIR")  # unset: wandb's files go beside the run's other logs
    started = []
    real_init = wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kwargs: started.append(kwargs) or real_init(**kwargs))
    out = run(load_recipe(write_recipe("gan", *TINY, "train.report_to=wandb")))
    assert [(k["project"], k["name"]) for k in started] == [("hfgen", "out")]
    run_id = tracker_runs(out)["runs"]["wandb"]
    (offline,) = wandb_offline_runs(out / "logs")
    assert offline.name.endswith(f"-{run_id}") and (offline / f"run-{run_id}.wandb").is_file()
    assert (out / "logs" / "metrics.jsonl").is_file()


# --- resume -------------------------------------------------------------------------------------


def test_resumed_run_goes_on_in_the_same_wandb_and_mlflow_runs(write_recipe, offline_trackers, monkeypatch):
    pytest.importorskip("wandb")
    mlflow = pytest.importorskip("mlflow")
    import wandb
    from mlflow import MlflowClient

    _, wandb_dir = offline_trackers
    started = []
    real_init = wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kwargs: started.append(kwargs) or real_init(**kwargs))
    recipe = write_recipe("gan", *TINY, "train.report_to=[wandb, mlflow]")
    kill_after_checkpoint(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(load_recipe(recipe))
    # the process "died": its tracker runs end unfinished, as a killed process leaves them
    mlflow.end_run(status="KILLED")
    wandb.finish(exit_code=1)
    restore_checkpointing(monkeypatch)
    first = tracker_runs(Path(recipe).parent / "out")["runs"]

    out = run(load_recipe(recipe, ["train.max_steps=5"]))  # resume: auto, from step 2, and a longer run
    assert tracker_runs(out)["runs"] == first
    (found,) = mlflow_runs("hfgen")
    assert found.info.run_id == first["mlflow"] and found.info.status == "FINISHED"
    steps = [m.step for m in MlflowClient().get_metric_history(first["mlflow"], "g_loss")]
    assert steps == [1, 2, 3, 4, 5]  # one run: steps 1-2 from the first start, 3-5 from the resumed one
    assert found.data.params["train.max_steps"] == "4"  # MLflow keeps the parameters of the run's first start
    assert [(k.get("id"), k.get("resume")) for k in started] == [(None, None), (first["wandb"], "allow")]
    offline = wandb_offline_runs(wandb_dir)  # one folder per start, or one for both when they began in the same second
    # one id: one wandb run. A start in the same second as the last reuses its folder name with "-1" appended
    assert offline and all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{first['wandb']}(-\d+)?", p.name) for p in offline), offline
