"""Two real processes (DDP over gloo on CPU): every rank ends with the same weights, and the
launch that silently starts one process instead of two is refused."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfgen.train.accelerator import LaunchError, check_process_count

ROOT = Path(__file__).resolve().parents[2]


def launch(args, tmp_path, **env):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1", **env}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", *args],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )


def test_two_process_gan_keeps_generator_and_discriminator_identical_on_both_ranks(write_recipe, tmp_path):
    recipe = write_recipe("gan", "train.max_steps=4", "train.save_every=2", "train.batch_size=4", "train.num_processes=2")
    result = launch(["--multi_gpu", "--num_processes", "2", "--main_process_port", "29517",
                     str(ROOT / "tests" / "train" / "ddp_dump_script.py"), str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "out"
    for step in (2, 4):
        rank0 = load_file(out / f"rank0-step{step}.safetensors")
        rank1 = load_file(out / f"rank1-step{step}.safetensors")
        assert int(rank0["world_size"]) == 2
        assert {k.split(".")[0] for k in rank0} >= {"0", "1"}  # generator and discriminator
        different = [k for k in rank0 if not torch.equal(rank0[k], rank1[k])]
        assert not different, f"replicas diverged at step {step}: {different[:5]}"
    # and training moved them
    first, last = load_file(out / "rank0-step2.safetensors"), load_file(out / "rank0-step4.safetensors")
    assert any(not torch.equal(first[k], last[k]) for k in first if k != "world_size")
    assert (out / "config.json").is_file()


def test_cpu_flag_with_several_processes_is_refused(write_recipe, tmp_path):
    """`accelerate launch --cpu --num_processes 2` starts ONE process; hfgen must not train on silently."""
    recipe = write_recipe("gan", "train.max_steps=1")
    result = launch(["--cpu", "--num_processes", "2", str(ROOT / "scripts" / "pretrain.py"), "--recipe", str(recipe)], tmp_path)
    assert result.returncode != 0
    assert "only 1 came up" in result.stderr and "--multi_gpu --num_processes" in result.stderr


def test_process_count_guard(monkeypatch):
    class One:
        num_processes = 1

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    check_process_count(One(), expected=None)
    with pytest.raises(LaunchError, match="train.num_processes is 2 but 1"):
        check_process_count(One(), expected=2, source="r.yaml")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(LaunchError, match="only 1 came up"):
        check_process_count(One(), expected=None)
