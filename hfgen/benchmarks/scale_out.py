"""`scale_out` workload: 1 process against 2 processes under DDP and under FSDP2, for MLM pretraining and classifier fine-tuning.

Each arm runs the shipped recipe (`mlm_bert_small_corpus.yaml`, `minilm_rotten_tomatoes_critics.yaml`) through
`accelerate launch` at the same global batch (2 processes: half the batch each, one torch thread each; 1 process:
every core), with checkpoints and mid-run evaluation off (and a warm-up of a tenth of the steps), and reports the run's own training throughput
(`train_*_per_s` of its `eval_results.json`: global, training loop only) and the peak resident memory of its
largest process. On a CPU machine the processes share its cores and gloo carries the gradients (and, under FSDP2,
the parameter all-gathers), so 2 processes are not expected to be faster here; the figures say what each engine
costs. On GPUs each process has its own device (recipes/accelerate/multi_gpu.yaml, fsdp2.yaml).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# name -> (recipe, script, throughput key, recipe overrides besides the batch and output folder)
WORKLOADS = {
    "mlm": ("recipes/pretrain/mlm_bert_small_corpus.yaml", "pretrain.py", "train_tokens_per_s", ["data.eval_split=null"]),
    "classifier": ("recipes/finetune/minilm_rotten_tomatoes_critics.yaml", "finetune.py", "train_examples_per_s",
                   ["data.eval_split=null", "classifier.eval_every_epoch=false"]),
}
ARMS = {  # name -> (processes, accelerate launch options)
    "1 process": (1, []),
    "2 processes, DDP": (2, ["--multi_gpu"]),
    "2 processes, FSDP2": (2, ["--config_file", str(ROOT / "recipes" / "accelerate" / "fsdp2.yaml")]),
}
GLOBAL_BATCH = 32

# Runs the command and prints the peak RSS (kB) of the largest process under it: the launcher and its workers are
# waited for, so RUSAGE_CHILDREN's high-water mark covers them (this small wrapper adds nothing to it).
_PEAK = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def measure(workload: str, arm: str, steps: int) -> dict:
    """One arm of one workload: its training throughput and the peak RSS of its largest process."""
    from hfgen.testing import free_port

    recipe, script, key, extra = WORKLOADS[workload]
    processes, options = ARMS[arm]
    with tempfile.TemporaryDirectory(prefix="hfgen-scale-out-") as tmp:
        overrides = [f"train.output_dir={tmp}/out", f"train.max_steps={steps}", f"train.batch_size={GLOBAL_BATCH // processes}",
                     f"train.num_processes={processes}", f"train.warmup_steps={steps // 10}", "train.save_every=null", "train.eval_every=null", "train.report_to=none", *extra]
        launch = [sys.executable, "-m", "accelerate.commands.launch", *options, "--num_processes", str(processes), "--num_machines", "1",
                  "--dynamo_backend", "no", "--main_process_port", str(free_port())]
        if processes == 1:
            launch = [sys.executable]  # a plain process, as `python scripts/finetune.py` runs
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": os.environ.get("ACCELERATE_USE_CPU", "1")}
        env.pop("WORLD_SIZE", None)
        command = [sys.executable, "-c", _PEAK, *launch, str(ROOT / "scripts" / script), "--recipe", str(ROOT / recipe), *overrides]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{workload} / {arm} failed:\n{done.stderr[-4000:]}")
        results = json.loads((Path(tmp) / "out" / "eval_results.json").read_text())
    return {"workload": workload, "arm": arm, "processes": processes, key: results[key], "steps": results["steps"],
            "mixed_precision": results["mixed_precision"], "peak_rss_mb_largest_process": int(done.stdout.split()[-1]) / 1024}


def run(quick: bool = False, threads: int | None = None) -> dict:
    from . import machine

    steps = {"mlm": 15 if quick else 60, "classifier": 15 if quick else 100}
    rows = []
    for workload in WORKLOADS:
        for arm in ARMS:
            print(f"[scale_out] {workload}: {arm}", file=sys.stderr, flush=True)
            rows.append(measure(workload, arm, steps[workload]))
        key = WORKLOADS[workload][2]
        single = next(row[key] for row in rows if row["workload"] == workload and row["processes"] == 1)
        for row in rows:
            if row["workload"] == workload:
                row["vs_1_process"] = row[key] / single
    return {"machine": machine(threads), "rows": rows,
            "settings": {"global_batch": GLOBAL_BATCH, "steps": steps, "precision": "train.mixed_precision: auto (each recipe's)",
                         "checkpoints": "off", "mid-run evaluation": "off"}}
