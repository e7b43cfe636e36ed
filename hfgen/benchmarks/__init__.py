"""Benchmarks: hfgen against the reference implementation of a workload, on the same model, data,
budget and precision, in one run, so the ratio is not skewed by a different machine or day.

`WORKLOADS` maps a workload name (the subcommand of ``scripts/benchmark.py``) to the module whose
``run(quick: bool) -> dict`` measures it. The dict holds ``hfgen``, the peer(s), ``settings`` and
``ratio`` (hfgen's throughput over the peer's; >1 means hfgen is faster). Peers are installed
with the ``bench`` extra, never as hfgen's own dependencies.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

WORKLOADS: dict[str, str] = {
    "finetune": "hfgen.benchmarks.finetune",  # text classifier fine-tuning vs transformers' Trainer
    "gan": "hfgen.benchmarks.gan",  # DCGAN training vs the pytorch/examples loop
    "mlm": "hfgen.benchmarks.mlm",  # masked-LM pretraining vs transformers' run_mlm_no_trainer loop
    "vae": "hfgen.benchmarks.vae",  # VAE training vs pythae's VAE + BaseTrainer
    "low_label": "hfgen.benchmarks.low_label",  # image fine-tuning on 1% / 10% of labels: random init vs autoencoder vs SimCLR
}


def run_workload(name: str, quick: bool = False, json_path: str | None = None, threads: int | None = None) -> dict:
    """Run one workload, print its results as JSON, and write them to ``json_path`` when given.

    ``threads``: CPU threads per contender, for workloads whose ``run`` takes a ``threads`` argument
    (on a machine shared with other jobs, 1 thread each gives steadier ratios than oversubscribed cores).
    """
    if name not in WORKLOADS:
        raise KeyError(f"unknown benchmark workload {name!r}; known: {sorted(WORKLOADS)}")
    run = importlib.import_module(WORKLOADS[name]).run
    extra = {}
    if threads is not None:
        if "threads" not in inspect.signature(run).parameters:
            raise ValueError(f"benchmark workload {name!r} does not take --threads")
        extra["threads"] = threads
    results = run(quick=quick, **extra)
    text = json.dumps(results, indent=2, sort_keys=False, default=str)
    print(text)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text + "\n")
    return results
