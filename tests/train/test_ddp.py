"""Two real processes (DDP over gloo on CPU): every rank ends with the same weights, and the
launch that silently starts one process instead of two is refused."""

import os
import shutil
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


def test_two_processes_with_sync_batchnorm_train_identical_replicas(write_recipe, tmp_path):
    recipe = write_recipe("gan", "train.max_steps=4", "train.save_every=2", "train.batch_size=4", "train.num_processes=2",
                          "train.sync_batchnorm=true")
    result = launch(["--multi_gpu", "--num_processes", "2", "--main_process_port", "29519",
                     str(ROOT / "tests" / "train" / "ddp_dump_script.py"), str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "BatchNorm layers use the statistics of all 2 processes' batches" in result.stderr
    rank0, rank1 = (load_file(tmp_path / "out" / f"rank{r}-step4.safetensors") for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # running statistics included, without averaging
    assert any("running_mean" in k for k in rank0)


@pytest.mark.parametrize("engine, method, refused", [
    ("FSDP", "gan", "two (generator and discriminator)"), ("FSDP", "vae", "small convolutional ones"),
    ("DEEPSPEED", "classifier", "not been verified under DeepSpeed"), ("FSDP", "mlm", None),
])  # fmt: skip
def test_engines_a_method_does_not_run_under_are_refused_before_training_with_the_launch_to_use(engine, method, refused):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from hfgen.train import build_method
    from hfgen.train.accelerator import check_distributed_engine

    recipe = SimpleNamespace(source="r.yaml", method=method, mlm=None, gan=None, vae=None, classifier=None)
    runner = build_method(recipe)
    if refused is None:
        check_distributed_engine(getattr(DistributedType, engine), recipe, runner)  # runs under FSDP2
        return
    with pytest.raises(LaunchError, match="does not run under .*accelerate launch --multi_gpu") as error:
        check_distributed_engine(getattr(DistributedType, engine), recipe, runner)
    assert refused in str(error.value)
    check_distributed_engine(DistributedType.MULTI_CPU, recipe, runner)  # DDP runs


@pytest.mark.slow  # two launchers, killed and started again: ~1 min
def test_two_machines_on_one_host_killed_after_a_checkpoint_resume_on_both(write_recipe, tmp_path):
    """`--num_machines 2 --machine_rank 0/1 --main_process_ip 127.0.0.1`: one launcher per "machine", as on a cluster."""
    import signal
    import time

    psutil = pytest.importorskip("psutil")
    recipe = write_recipe("gan", "train.max_steps=400", "train.save_every=2", "train.keep_last=1", "train.batch_size=4",
                          "train.num_processes=2", "train.sample_every=null")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)

    def start(rank, port, *overrides):
        log = open(tmp_path / f"machine{rank}-{port}.log", "w")
        return subprocess.Popen(
            [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2", "--machine_rank", str(rank),
             "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
             str(ROOT / "scripts" / "pretrain.py"), "--recipe", str(recipe), *overrides],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    machines = [start(rank, 29521) for rank in (0, 1)]
    deadline = time.time() + 240
    while not list((tmp_path / "out" / "checkpoints").glob("checkpoint-*")) and time.time() < deadline:
        time.sleep(0.5)
    for machine in machines:  # both machines die: the launcher and its workers (torch elastic starts them in sessions of their own)
        for process in [*psutil.Process(machine.pid).children(recursive=True), psutil.Process(machine.pid)]:
            process.send_signal(signal.SIGKILL)
        machine.wait()
    time.sleep(1)
    killed_at = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "out" / "checkpoints").glob("checkpoint-*"))
    assert killed_at and not (tmp_path / "out" / "config.json").exists()

    machines = [start(rank, 29523, f"train.max_steps={killed_at[-1] + 4}") for rank in (0, 1)]
    codes = [machine.wait(timeout=300) for machine in machines]
    logs = [(tmp_path / f"machine{rank}-29523.log").read_text() for rank in (0, 1)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert f"resumed from" in logs[0] and f"at step {killed_at[-1]}" in logs[0]
    assert (tmp_path / "out" / "config.json").is_file()


def test_two_machines_without_a_shared_filesystem_each_keep_checkpoints_and_resume_from_the_same_step(write_recipe, tmp_path):
    """`train.save_on_each_node`: each "machine" writes into its own output_dir (its local disk). Machine 1 lost its
    newest checkpoint (died mid-write); both must resume from the newest step they both hold, not each its own."""
    import signal
    import time

    psutil = pytest.importorskip("psutil")
    recipe = write_recipe("gan", "train.max_steps=400", "train.save_every=2", "train.keep_last=3", "train.batch_size=4",
                          "train.num_processes=2", "train.sample_every=null", "train.save_on_each_node=true")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    disks = [tmp_path / "machine0", tmp_path / "machine1"]

    def start(rank, port, *overrides):
        log = open(tmp_path / f"machine{rank}-{port}.log", "w")
        return subprocess.Popen(
            [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2", "--machine_rank", str(rank),
             "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
             str(ROOT / "scripts" / "pretrain.py"), "--recipe", str(recipe), f"train.output_dir={disks[rank]}", *overrides],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def steps(disk):
        return sorted(int(p.name.split("-")[1]) for p in (disk / "checkpoints").glob("checkpoint-*"))

    def kill(machines):  # the launcher and its workers (torch elastic starts them in sessions of their own)
        for machine in machines:
            try:
                for process in [*psutil.Process(machine.pid).children(recursive=True), psutil.Process(machine.pid)]:
                    process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
            machine.wait()

    machines = [start(rank, 29525) for rank in (0, 1)]
    deadline = time.time() + 240
    while min(len(steps(disk)) for disk in disks) < 2 and time.time() < deadline:
        time.sleep(0.5)
    kill(machines)
    time.sleep(1)
    held = [steps(disk) for disk in disks]
    assert len(held[1]) >= 2, held
    for step in held[1][-1:]:  # machine 1 loses its newest: machine 0 now holds a step machine 1 does not
        shutil.rmtree(disks[1] / "checkpoints" / f"checkpoint-{step:08d}")
    common = max(set(held[0]) & set(held[1][:-1]))

    machines = [start(rank, 29527, f"train.max_steps={max(held[0]) + 4}") for rank in (0, 1)]
    try:  # machines resuming from different steps would wait on each other forever
        codes = [machine.wait(timeout=300) for machine in machines]
    finally:
        kill(machines)
    logs = [(tmp_path / f"machine{rank}-29527.log").read_text() for rank in (0, 1)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    for log in logs:  # each machine's first process reads its own disk, and both start from the same step
        assert f"at step {common} " in log, log[-3000:]
    assert "checkpoints differ between processes" in logs[0] and "lacks step" in logs[0]
    assert (disks[0] / "config.json").is_file()
    assert max(steps(disks[1])) > common  # machine 1 goes on writing its own checkpoints
