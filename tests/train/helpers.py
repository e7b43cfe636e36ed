"""Small shared checks for the training tests."""

import json
from pathlib import Path

from safetensors.torch import load_file


def read_metrics(output_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(output_dir) / "logs" / "metrics.jsonl").read_text().splitlines()]


def assert_same_weights(dir_a, dir_b):
    name = "unet/diffusion_pytorch_model.safetensors" if (Path(dir_a) / "model_index.json").is_file() else "model.safetensors"
    a, b = load_file(Path(dir_a) / name), load_file(Path(dir_b) / name)
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k] == b[k]).all()]
    assert not different, f"tensors differ: {different[:5]}"


def kill_after_checkpoint(monkeypatch, step: int) -> None:
    """Make the training engine "die" (KeyboardInterrupt) right after it has written the checkpoint of `step`,
    as a kill -9 between two steps would: everything after it is lost, the checkpoint is complete."""
    import hfgen.train.engine as engine

    real = engine.save_checkpoint

    def dies_after(run, stateful):
        path = real(run, stateful)
        if run.state.step == step:
            raise KeyboardInterrupt(f"killed after checkpoint {step}")
        return path

    monkeypatch.setattr(engine, "save_checkpoint", dies_after)


def restore_checkpointing(monkeypatch) -> None:
    """Undo `kill_after_checkpoint`."""
    import hfgen.train.engine as engine
    from hfgen.train.checkpoint import save_checkpoint

    monkeypatch.setattr(engine, "save_checkpoint", save_checkpoint)


def launch_processes(script: str, recipe, *overrides: str, engine=("--multi_gpu",), processes: int = 2, timeout: int = 300):
    """`accelerate launch <engine> --num_processes N scripts/<script> --recipe <recipe> <overrides>` on CPU processes
    (gloo), in fp32; returns the CompletedProcess, whose whole stderr is also written beside the recipe (`.log`)."""
    import os
    import subprocess
    import sys

    from hfgen.testing import free_port

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "accelerate.commands.launch", *engine, "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               str(root / "scripts" / script), "--recipe", str(recipe), *overrides]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    Path(recipe).with_suffix(".log").write_text(done.stderr)
    return done
