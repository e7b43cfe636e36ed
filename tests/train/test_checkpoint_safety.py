"""Checkpoints that cannot run code, that are never written with non-finite weights, that fall back past a damaged
one, and whose resume takes the recipe's current optimizer settings."""

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfgen.config import load_recipe
from hfgen.train import run
from hfgen.train.checkpoint import CheckpointMismatch, list_checkpoints
from hfgen.train.divergence import TrainingDiverged

from hfgen.testing.pytest_plugin import hub_env, hub_repo_id, hub_server  # noqa: F401 (fixtures)

from .classifier_fixtures import classifier_recipe, task_data, tiny_bert  # noqa: F401 (fixtures)
from .helpers import assert_same_weights, kill_after_checkpoint, read_metrics, restore_checkpointing


class _Payload:
    """Unpickling this creates `marker`: proof that a loader executed code from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# every name a checkpoint has held: Accelerate's pickles (custom_checkpoint_*.pkl, random_states_*.pkl, *.bin) and
# hfgen's safetensors + JSON files
PLANTED_NAMES = [
    "custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "random_states_0.pkl", "optimizer.bin", "optimizer_1.bin",
    "scheduler.bin", "scaler.pt", "sampler.bin", "pytorch_model.bin", "model.safetensors", "model_1.safetensors",
    "optimizer.safetensors", "optimizer.json", "scheduler.json", "random_states_0.safetensors", "random_states_0.json",
    "ema.json", "ema.safetensors", "generator_evaluation.json", "train_state.json",
]


def _killed_gan_run(write_recipe, monkeypatch, *overrides):
    """A GAN run killed right after its step-4 checkpoint (checkpoints 2 and 4 on disk); returns the recipe path."""
    recipe = write_recipe("gan", "train.max_steps=6", "train.save_every=2", "train.sample_every=null", *overrides)
    kill_after_checkpoint(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run(load_recipe(recipe))
    restore_checkpointing(monkeypatch)
    return recipe


def test_resume_never_unpickles_a_planted_file(write_recipe, tmp_path, monkeypatch, caplog):
    reference = run(load_recipe(write_recipe("gan", "train.max_steps=6", "train.save_every=2", "train.sample_every=null",
                                             f"train.output_dir={tmp_path / 'reference'}", name="ref.yaml")))
    recipe = _killed_gan_run(write_recipe, monkeypatch)
    out = tmp_path / "out"
    pristine = tmp_path / "pristine"
    shutil.copytree(out / "checkpoints", pristine)
    marker = tmp_path / "code-ran"
    for name in PLANTED_NAMES:
        shutil.rmtree(out / "checkpoints")
        shutil.copytree(pristine, out / "checkpoints")
        (out / "checkpoints" / "checkpoint-00000004" / name).write_bytes(pickle.dumps(_Payload(marker)))
        caplog.clear()
        finished = run(load_recipe(recipe))  # resume: auto
        assert not marker.exists(), f"resume executed code planted as {name}"
        if (pristine / "checkpoint-00000004" / name).exists() and not name.endswith(".pkl"):
            # a file hfgen reads: refused by name, and the run falls back to the step-2 checkpoint (still exact)
            assert f"checkpoint-00000004/{name}" in caplog.text and "falling back to" in caplog.text, name
        assert_same_weights(finished, reference)
        (out / "config.json").unlink()  # not finished again, for the next name


def test_checkpoint_fetched_from_the_hub_never_runs_code(hub_server, hub_env, hub_repo_id, write_recipe, tmp_path, monkeypatch):
    from hfgen.hub import hub_api

    repo = hub_repo_id("planted-checkpoint")
    hub = ("hub.push_checkpoints=true", f"hub.repo_id={repo}")
    recipe = _killed_gan_run(write_recipe, monkeypatch, *hub)
    marker = tmp_path / "code-ran"
    api = hub_api()  # the local Hub server (HF_ENDPOINT is read once, at import)
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"):
        api.upload_file(path_or_fileobj=pickle.dumps(_Payload(marker)), path_in_repo=f"checkpoints/checkpoint-00000004/{name}",
                        repo_id=repo, revision="checkpoints")
    fresh = load_recipe(recipe, [f"train.output_dir={tmp_path / 'fresh-machine'}"])
    out = run(fresh)  # an empty output_dir: resume: auto fetches checkpoint 4 from the branch, pickles and all
    assert not marker.exists()
    assert [m["step"] for m in read_metrics(out) if "d_loss" in m] == [5, 6]  # it did continue from step 4

    # a planted file hfgen reads is refused by name; every kept checkpoint was fetched, so the run falls back
    api.upload_file(path_or_fileobj=pickle.dumps(_Payload(marker)), path_in_repo="checkpoints/checkpoint-00000006/model.safetensors",
                    repo_id=repo, revision="checkpoints")
    again = run(load_recipe(recipe, [f"train.output_dir={tmp_path / 'another-machine'}", "train.max_steps=8"]))
    assert not marker.exists()
    assert [m["step"] for m in read_metrics(again) if "d_loss" in m][0] == 5  # from checkpoint 4: checkpoint 6 refused
    assert (tmp_path / "another-machine" / "checkpoints" / ".refused-checkpoint-00000006").is_dir()


@pytest.mark.parametrize("damaged", ["model.safetensors", "random_states_0.safetensors", "optimizer.json"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(write_recipe, tmp_path, monkeypatch, caplog, damaged):
    reference = run(load_recipe(write_recipe("gan", "train.max_steps=6", "train.save_every=2", "train.sample_every=null",
                                             f"train.output_dir={tmp_path / 'reference'}", name="ref.yaml")))
    recipe = _killed_gan_run(write_recipe, monkeypatch)
    file = tmp_path / "out" / "checkpoints" / "checkpoint-00000004" / damaged
    file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2])  # truncated
    out = run(load_recipe(recipe))
    assert "refusing checkpoint" in caplog.text and damaged in caplog.text and "checkpoint-00000002" in caplog.text
    assert_same_weights(out, reference)


def test_diverged_run_leaves_only_finite_checkpoints_and_names_the_newest(classifier_recipe):
    """The issue's repro: a huge learning rate, a checkpoint every step, losses logged every 4 steps."""
    recipe = load_recipe(classifier_recipe("single_label", "train.learning_rate=1e6", "train.save_every=1", "train.log_every=4",
                                           "train.max_steps=12", "classifier.eval_every_epoch=false"))
    with pytest.raises(TrainingDiverged) as diverged:
        run(recipe)
    checkpoints = list_checkpoints(recipe.train.output_dir)
    for checkpoint in checkpoints:
        weights = load_file(checkpoint / "model.safetensors")
        assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point()), checkpoint
    if checkpoints:
        assert str(checkpoints[-1]) in str(diverged.value)
    else:
        assert "No checkpoint with finite weights" in str(diverged.value)


def test_resume_takes_the_recipes_new_learning_rate_and_refuses_a_new_batch_size(write_recipe, tmp_path, monkeypatch, caplog):
    recipe = _killed_gan_run(write_recipe, monkeypatch, "train.log_every=1")
    with pytest.raises(CheckpointMismatch, match=r"train.batch_size is 4 .* written with 8"):
        run(load_recipe(recipe, ["train.batch_size=4"]))
    out = run(load_recipe(recipe, ["train.learning_rate=1.0e-5"]))
    assert "train.learning_rate is 1e-05 in the recipe but 0.001" in caplog.text
    resumed = [m for m in read_metrics(out) if m["step"] in (5, 6) and "lr" in m]
    assert resumed and all(m["lr"] == pytest.approx(1.0e-5) for m in resumed[-2:])



def test_a_checkpoint_written_under_fsdp_is_not_resumed_under_ddp(write_recipe, tmp_path, monkeypatch):
    """FSDP checkpoints key the optimizer state by parameter name, DDP's by index: a switch of engine is refused, naming both."""
    import json

    recipe = _killed_gan_run(write_recipe, monkeypatch)
    newest = list_checkpoints(tmp_path / "out")[-1]
    state = json.loads((newest / "train_state.json").read_text())
    assert state["hyperparameters"]["sharded"] is False
    state["hyperparameters"]["sharded"] = True  # as FSDP would have written it
    (newest / "train_state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointMismatch, match="written under FSDP and this launch runs DDP"):
        run(load_recipe(recipe))


def test_mixed_precision_auto_follows_the_cpu(monkeypatch, write_recipe):
    from hfgen.train import hardware

    def facts(native):
        return hardware.CPUFacts(model="Test CPU", native_bf16=native, bf16_flags=("amx_bf16",) if native else (), cores=2)

    for native, expected in ((False, "no"), (True, "bf16")):
        monkeypatch.setattr(hardware, "cpu_facts", lambda native=native: facts(native))
        choice, reason = hardware.resolve_mixed_precision("auto", "cpu")
        assert choice == expected and "Test CPU" in reason
    assert hardware.resolve_mixed_precision("bf16", "cpu")[0] == "bf16"  # an explicit choice is honoured

    monkeypatch.setattr(hardware, "cpu_facts", lambda: facts(False))
    out = run(load_recipe(write_recipe("vae", "train.mixed_precision=auto", "train.max_steps=2")))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["mixed_precision"] == "no" and "no native bf16" in results["mixed_precision_reason"]
    assert "precision `no`" in (out / "README.md").read_text()
