"""`finetune_options` workload: the engine's model options on the fine-tuning workload of `finetune`, each against
plain full fine-tuning, on the machine at hand. It sets the defaults (`train.gradient_checkpointing`,
`train.compile`: off unless this shows they pay here) and the LoRA table of docs/performance.md.

Every arm fine-tunes MiniLM on rotten_tomatoes_critics for one epoch exactly as `finetune`'s ``hfgen`` contender
(the recipe, `train.mixed_precision: auto`, no validation split, test split scored once), in its own fresh process
(so ``peak_memory`` is that arm's alone), one after the other:

- ``full``: every weight trains (the recipe as it is);
- ``lora``: `classifier.lora` r=8, alpha=16, dropout 0.1 on peft's default BERT layers (query, value), the head
  trained whole, at lr 1e-3 (LoRA's updates start at zero and take a larger rate than full fine-tuning's 1e-4;
  Hu et al. used 4e-4 to 5e-4 for RoBERTa);
- ``gradient_checkpointing``: ``full`` with `train.gradient_checkpointing: true`;
- ``compile``: ``full`` with `train.compile: true` (inductor); its throughput includes the compilation, as a
  user's run pays it; every arm's ``examples_per_s_steady`` is the median rate of the logging windows after the
  first `WARMUP_STEPS` steps (compilation and warm-up left out).

`python scripts/benchmark.py finetune_options [--quick]`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

WARMUP_STEPS = 60  # steps before the steady rate is read (compilation of the first shapes is done by then)

ARMS: dict[str, tuple[str, ...]] = {
    "full": (),
    "lora": ("classifier.lora.r=8", "classifier.lora.alpha=16", "classifier.lora.dropout=0.1", "train.learning_rate=1.0e-3"),
    "gradient_checkpointing": ("train.gradient_checkpointing=true",),
    "compile": ("train.compile=true",),
}


def _arm_main(name: str, settings_path: str, result_path: str) -> None:
    from hfgen.benchmarks import write_contender_result
    from hfgen.benchmarks.finetune import run_hfgen

    settings = json.loads(Path(settings_path).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        result = run_hfgen(settings, str(out), (*ARMS[name], "train.report_to=jsonl", "train.log_every=10"))
        rows = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
        rates = sorted(r["examples_per_s"] for r in rows if "examples_per_s" in r and r["step"] > WARMUP_STEPS)
        result["examples_per_s_steady"] = rates[len(rates) // 2] if rates else None
    write_contender_result(result, result_path)


def run(quick: bool = False, threads: int | None = None) -> dict:
    """Every arm in its own process; each figure beside ``full``'s."""
    import peft
    import torch
    import transformers

    from hfgen.benchmarks import machine, run_contenders
    from hfgen.benchmarks.finetune import settings_for
    from hfgen.benchmarks.precision import hfgen_arms

    settings = settings_for(quick, threads)
    auto = hfgen_arms()["hfgen"]
    with tempfile.TemporaryDirectory() as tmp:
        arms = run_contenders(__name__, ARMS, settings, Path(tmp), dict.fromkeys(ARMS, auto))
    full = arms["full"]
    for name, arm in arms.items():
        arm["overrides"] = list(ARMS[name])
        arm["speedup_vs_full"] = arm["examples_per_s"] / full["examples_per_s"]
        if arm["examples_per_s_steady"] and full["examples_per_s_steady"]:
            arm["steady_speedup_vs_full"] = arm["examples_per_s_steady"] / full["examples_per_s_steady"]
        arm["accuracy_delta_points"] = 100 * (arm["accuracy"] - full["accuracy"])
        peak, full_peak = (next(iter(a["peak_memory"].values())) for a in (arm, full))
        arm["peak_memory_vs_full"] = peak / full_peak
    return {
        "workload": "finetune_options",
        "machine": machine(settings["cpu_threads"]),
        "settings": {**settings, "precision": "auto", "torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "throughput": "training examples per second of the training loop (1 epoch)"},
        **arms,
    }


if __name__ == "__main__":
    _arm_main(*sys.argv[1:4])
