"""What the machine at hand can do, read once at run time, and the precision chosen from it.

Speed depends on the chip, not on the code: bf16 autocast is faster than fp32 on a CPU with native bf16 (AVX512-BF16
or AMX) and 2-3x *slower* on one without it, where it is emulated (both measured on project machines: docs/engine.md, docs/benchmarks.md).
So no recipe names a precision for "this CPU": `train.mixed_precision: auto` asks `resolve_mixed_precision`,
which decides from the device, and the choice and its reason go into the log, `eval_results.json` and the card.
The engine's other speed choices (attention kernel, dropout masks, fused AdamW, texts per forward) are made here
too, by `speed_choices`; `scripts/benchmark.py speed_choices` re-measures each on and off on the machine at hand.

(`torch.ops.mkldnn._is_mkldnn_bf16_supported()` says True even where bf16 is emulated, so it is not used.)
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 flags (/proc/cpuinfo) of native bf16 arithmetic


@dataclass(frozen=True)
class CPUFacts:
    """The CPU model and its bf16 support, as published beside every figure hfgen measures."""

    model: str  # e.g. "Intel(R) Xeon(R) Processor", "AMD EPYC 9R14 96-Core Processor"
    native_bf16: bool  # bf16 matmuls run in hardware (AVX512-BF16 or AMX on x86)
    bf16_flags: tuple[str, ...]  # which of BF16_FLAGS the CPU reports
    cores: int  # cores this process may use

    def as_dict(self) -> dict:
        return {**asdict(self), "bf16_flags": list(self.bf16_flags)}

    def describe(self) -> str:
        support = f"native bf16 ({', '.join(self.bf16_flags)})" if self.native_bf16 else "no native bf16"
        return f"{self.model}, {self.cores} cores, {support}"


@lru_cache(maxsize=1)
def cpu_facts() -> CPUFacts:
    """Read the CPU's model name and flags (Linux /proc/cpuinfo; torch's own check elsewhere)."""
    import os

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    found = tuple(flag for flag in BF16_FLAGS if flag in flags)
    native = bool(found) or _torch_reports_native_bf16()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return CPUFacts(model=model, native_bf16=native, bf16_flags=found, cores=cores)


def _torch_reports_native_bf16() -> bool:
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(check() for check in checks if check is not None)
    except RuntimeError:
        return False


def planned_device_type() -> str:
    """The device type the Accelerator will pick, known before it is built (its precision is fixed at construction;
    creating accelerate's PartialState this early would fix the process layout before the Accelerator's own)."""
    import os

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    for name in ("xpu", "mps"):
        backend = getattr(torch, name, None) or getattr(torch.backends, name, None)
        if backend is not None and getattr(backend, "is_available", lambda: False)():
            return name
    return "cpu"


def resolve_mixed_precision(requested: str, device_type: str) -> tuple[str, str]:
    """(`no` | `bf16` | `fp16`, why) for `train.mixed_precision` on a device of `device_type`.

    `auto`: on CUDA bf16 where the GPU supports it, else fp16; on CPU bf16 only with native bf16, else fp32;
    anything else (MPS, XPU, ...) fp32. An explicit choice is honoured (fp16 needs a GPU: the caller checks).
    """
    if requested != "auto":
        return requested, f"train.mixed_precision: {requested} (set in the recipe)"
    if device_type == "cuda":
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):  # T4/V100 emulate it: fp16 is their fast path
            return "bf16", f"auto: {name} supports bf16"
        return "fp16", f"auto: {name} has no bf16, fp16 with loss scaling instead"
    if device_type == "cpu":
        facts = cpu_facts()
        if facts.native_bf16:
            return "bf16", f"auto: {facts.describe()}: bf16 autocast is faster than fp32 there"
        return "no", f"auto: {facts.describe()}: bf16 would be emulated (slower than fp32), so fp32"
    return "no", f"auto: fp32 on {device_type}"


@dataclass(frozen=True)
class SpeedChoices:
    """How the engine's methods run fastest on a device type (the math is the same either way)."""

    attention: str  # training attention kernel of transformers text encoders ("eager" or "sdpa")
    fast_dropout: bool  # hfgen's cheaper dropout masks (hfgen.train.fast_dropout)
    fused_adamw: bool | None  # torch's fused AdamW kernel (None: torch's default)
    texts_per_forward: int | None  # contrastive: length-sorted chunks of this many texts per forward (None: one forward)


def speed_choices(device_type: str) -> SpeedChoices:
    """The speed choices for `device_type`. CPU figures (`scripts/benchmark.py speed_choices`, 2 threads, bf16 where
    native), speed-up of each choice over its alternative:

    | choice | Intel Xeon (Emerald Rapids, AMX-BF16), 2026-12-01 | AMD EPYC (family 25 model 17, AVX512-BF16), 2026-12-03 |
    |---|---|---|
    | eager attention over sdpa, MiniLM fine-tuning step | 1.19x | 1.21x |
    | eager attention over sdpa, BERT 4x256 MLM step | 1.25x | 1.11x |
    | fast dropout masks over torch's, MiniLM step | 1.19x | 1.03x |
    | [CLS]-only last layer, MiniLM classifier step | - | 1.06x |
    | fused AdamW over the for-loop, MiniLM step | 1.29x | 1.05x |
    | length-sorted forwards of 32 texts, MiniLM pairs step | - | 1.11x |

    The EPYC column runs with glibc keeping freed memory, as the engine does on CPU (`train.reuse_cpu_memory`); the
    Xeon column ran without it, and page faults of fresh allocations (torch's dropout masks, the for-loop's
    temporaries) then count against the alternatives: on the EPYC, a run without it gave 1.27x for fast dropout and
    1.27x for fused AdamW (`--quick`). Every choice helps on both CPUs, so every one is kept.

    On GPUs sdpa (flash/memory-efficient kernels) and torch's dropout are the fast ones; fused AdamW is kept.
    """
    if device_type == "cpu":
        return SpeedChoices(attention="eager", fast_dropout=True, fused_adamw=True, texts_per_forward=32)
    return SpeedChoices(attention="sdpa", fast_dropout=False, fused_adamw=True if device_type == "cuda" else None, texts_per_forward=None)
