"""Checkpoints, resume and faults: a killed run continues exactly; nothing half-written is trusted."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hfgen.config import load_recipe
from hfgen.train import run
from hfgen.train.checkpoint import OutputDirError, list_checkpoints
from hfgen.train.divergence import TrainingDiverged

from .helpers import assert_same_weights

ROOT = Path(__file__).resolve().parents[2]


def test_finished_output_dir_is_refused_unless_overwrite(write_recipe):
    recipe = write_recipe("gan", "train.max_steps=2")
    run(load_recipe(recipe))
    with pytest.raises(OutputDirError, match="already holds a finished run.*train.overwrite=true"):
        run(load_recipe(recipe))
    out = run(load_recipe(recipe, ["train.overwrite=true"]))
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-00000002"]


def test_crash_during_checkpoint_write_leaves_previous_checkpoint_and_resume_is_exact(write_recipe, tmp_path, monkeypatch):
    reference = run(load_recipe(write_recipe("gan", f"train.output_dir={tmp_path / 'reference'}", name="ref.yaml")))

    import hfgen.train.checkpoint as checkpoint

    real_write = checkpoint.write_json_atomic
    calls = []

    def dies_on_second_checkpoint(path, data):
        calls.append(path)
        if len(calls) == 2:  # the step-4 checkpoint: every state file written, then the process "dies"
            raise KeyboardInterrupt("killed mid-checkpoint")
        return real_write(path, data)

    recipe = write_recipe("gan")
    monkeypatch.setattr(checkpoint, "write_json_atomic", dies_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run(load_recipe(recipe))
    monkeypatch.setattr(checkpoint, "write_json_atomic", real_write)
    out = tmp_path / "out"
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-00000002"]  # the half-written one is not listed
    assert not (out / "config.json").exists()

    run(load_recipe(recipe))  # resume: auto
    assert_same_weights(out, reference)


@pytest.mark.parametrize("method", ["gan", "vae"])
def test_sigkill_then_resume_matches_uninterrupted_run(write_recipe, tmp_path, method):
    """A real SIGKILL of `scripts/pretrain.py` mid-run; `resume: auto` then ends with exactly the
    weights of an uninterrupted run of the same length (same data order, optimizer, EMA, RNG)."""
    steps = "train.max_steps=400"
    common = [steps, "train.save_every=3", "train.log_every=50", "train.sample_every=null"]
    reference = run(load_recipe(write_recipe(method, *common, f"train.output_dir={tmp_path / 'reference'}", name="ref.yaml")))

    recipe = write_recipe(method, *common)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "pretrain.py"), "--recipe", str(recipe)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(int(p.name.split("-")[1]) >= 9 for p in list_checkpoints(out)):
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = list_checkpoints(out)[-1]
    assert not (out / "config.json").exists()

    run(load_recipe(recipe))
    assert int(killed_at.name.split("-")[1]) < 400
    assert_same_weights(out, reference)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(write_recipe, monkeypatch):
    import hfgen.train.methods.gan as gan

    real_loss = gan.generator_loss
    calls = []

    def nan_at_step_5(logits, kind):
        calls.append(1)
        loss = real_loss(logits, kind)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(gan, "generator_loss", nan_at_step_5)
    recipe = load_recipe(write_recipe("gan"))
    with pytest.raises(TrainingDiverged, match=r"g_loss is not finite at step 5.*checkpoint-00000004"):
        run(recipe)
    checkpoints = list_checkpoints(recipe.train.output_dir)
    assert [p.name for p in checkpoints] == ["checkpoint-00000002", "checkpoint-00000004"]
    from safetensors.torch import load_file

    weights = load_file(checkpoints[-1] / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


def test_resume_from_an_explicit_checkpoint(write_recipe, tmp_path):
    first = run(load_recipe(write_recipe("vae", "train.max_steps=4")))
    checkpoint = list_checkpoints(first)[-1]
    more = load_recipe(write_recipe("vae", "train.max_steps=8", f"train.output_dir={tmp_path / 'more'}", f"train.resume={checkpoint}", name="more.yaml"))
    out = run(more)
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-00000006", "checkpoint-00000008"]
    with pytest.raises(OutputDirError, match="not a complete hfgen checkpoint"):
        run(load_recipe(write_recipe("vae", f"train.resume={tmp_path}", f"train.output_dir={tmp_path / 'x'}", name="bad.yaml")))


@pytest.mark.parametrize("first_steps", [2, 3])  # mid-epoch, and the end of epoch 0 (6 batches, 2 per step)
def test_resume_with_gradient_accumulation_is_exact(write_recipe, tmp_path, first_steps):
    accumulate = ["train.gradient_accumulation_steps=2", "vae.kl_warmup_steps=6", "train.sample_every=null"]
    reference = run(load_recipe(write_recipe("vae", *accumulate, "train.max_steps=8", f"train.output_dir={tmp_path / 'ref'}", name="ref.yaml")))
    first = run(load_recipe(write_recipe("vae", *accumulate, f"train.max_steps={first_steps}", f"train.output_dir={tmp_path / 'first'}", name="first.yaml")))
    checkpoint = list_checkpoints(first)[-1]
    assert checkpoint.name == f"checkpoint-{first_steps:08d}"
    resumed = run(load_recipe(write_recipe("vae", *accumulate, "train.max_steps=8", f"train.output_dir={tmp_path / 'resumed'}", f"train.resume={checkpoint}", name="resumed.yaml")))
    assert_same_weights(resumed, reference)
