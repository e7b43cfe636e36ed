"""Peak memory of benchmark contenders, each measured in a process that runs only that contender.

Workloads whose contenders run in their own processes (finetune, contrastive, gan, vae) report
`peak_memory_mb` from each child (`hfgen.benchmarks.write_contender_result`). mlm times both contenders in one
process, step by step, which would mix the two in one figure, so it offers
``memory_probe(contender, precision, quick, threads) -> dict``: build only that contender in the precision it was
timed in, train it a few steps, return `peak_memory_mb()`; `measure_peak_memory` runs it in a fresh process
(``python -m hfgen.benchmarks.memory MODULE CONTENDER --precision P [--quick] [--threads N] --out FILE``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import sys
import tempfile
from pathlib import Path

import torch


def peak_memory_mb() -> dict:
    """The process's peak memory so far: ``{"peak_cuda_mb": ...}`` (torch's peak allocated bytes) when CUDA is
    in use, else ``{"peak_rss_mb": ...}`` (the resident set's high-water mark, which includes Python, torch
    and every library the process loaded)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return {"peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20}
    try:  # Linux: this process's own high-water mark. ru_maxrss would not do: it keeps the parent's across fork + exec,
        # so a contender started by a benchmark that had grown to 4 GB would report at least 4 GB.
        with open("/proc/self/status") as status:
            return {"peak_rss_mb": next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024}  # kB
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
        return {"peak_rss_mb": peak / 2**20 if sys.platform == "darwin" else peak / 1024}


def measure_peak_memory(module_name: str, contender: str, precision: str, quick: bool = False, threads: int | None = None) -> dict:
    """`peak_memory_mb()` of a fresh Python process that runs only ``module_name.memory_probe(contender, precision,
    quick, threads)``; includes the interpreter and torch baseline, the same for every contender."""
    from hfgen.benchmarks import run_in_fresh_process

    with tempfile.TemporaryDirectory(prefix="hfgen-memory-") as tmp:
        out = Path(tmp) / "peak.json"
        args = [module_name, contender, "--precision", precision, "--out", str(out)] + (["--quick"] if quick else [])
        args += ["--threads", str(threads)] if threads is not None else []
        run_in_fresh_process("hfgen.benchmarks.memory", *args, what=f"memory probe {module_name} {contender}")
        return json.loads(out.read_text())


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one benchmark contender's memory probe; write its peak memory as JSON.")
    parser.add_argument("module", help="module with memory_probe(contender, precision, quick, threads), e.g. hfgen.benchmarks.mlm")
    parser.add_argument("contender", help="hfgen or peer")
    parser.add_argument("--precision", required=True, help="the precision the contender was timed in: no (fp32) or bf16")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    probe = importlib.import_module(args.module).memory_probe
    Path(args.out).write_text(json.dumps(probe(args.contender, args.precision, args.quick, args.threads)))


if __name__ == "__main__":
    _main()
