"""A stand-in benchmark module for the memory-probe test (imported by a child process, not a test module)."""

import torch

from hfgen.benchmarks.memory import peak_memory_mb


def memory_probe(contender: str, precision: str, quick: bool, threads: int | None) -> dict:
    """``big`` holds 256 MiB of float32 (written, so its pages are resident); ``small`` nothing."""
    if contender == "big":
        held = torch.ones(256 * 2**20 // 4)  # (67,108,864,) float32
        held.add_(1.0)
    return {**peak_memory_mb(), "precision": precision, "quick": quick, "threads": threads}

