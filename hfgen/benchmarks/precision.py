"""Which precision each benchmark contender trains in, decided on the machine the benchmark runs on.

Which precision is fastest depends on the chip, not on the code: bf16 autocast beats fp32 where the CPU has
native bf16 (AVX512-BF16, AMX) and is several times slower where bf16 is emulated. So no workload names a
precision; each contender runs at its best on the machine at hand:

- ``hfgen``: `train.mixed_precision: auto`, which `hfgen.train.hardware.resolve_mixed_precision` decides here
  (its run records what it used in `eval_results.json`: `precision_used`; arms that do not go through a recipe
  take the precision `resolve_mixed_precision` gives);
- ``hfgen_other_precision``: hfgen at the fixed precision `auto` did not pick, so a result shows whether `auto`
  chose well (``auto_vs_best_fixed``: hfgen's throughput over the faster of the two, 1.0 when `auto` was right);
- the peer: the faster of fp32 and bf16 (on CUDA: bf16 where the GPU supports it), measured by
  `pick_peer_precision` on a short trial before the full run.

Every contender's dict records the ``precision`` it trained in (``no`` is fp32) and ``precision_reason``; hfgen's
arms also their ``mixed_precision`` (what the recipe asked for), the peer its ``precision_trial`` throughputs.
"""

from __future__ import annotations

from collections.abc import Callable

from hfgen.train.hardware import planned_device_type, resolve_mixed_precision

POLICY = ("per contender, chosen on this machine: hfgen train.mixed_precision auto; hfgen_other_precision the fixed "
          "precision auto did not pick; the peer the faster of fp32 and bf16 in a short trial (each contender's "
          "precision, precision_reason)")


def other_precision(choice: str) -> str:
    """The fixed precision `auto` did not pick: fp32 (``no``) when it picked a half precision, else bf16."""
    return "bf16" if choice == "no" else "no"


def hfgen_arms(device_type: str | None = None) -> dict[str, dict]:
    """The precision entries of hfgen's two arms on ``device_type`` (default: the device hfgen's training would pick,
    `planned_device_type`): ``hfgen`` (`train.mixed_precision: auto`) and ``hfgen_other_precision`` (the other fixed
    precision); each {"mixed_precision", "precision", "precision_reason"}."""
    choice, reason = resolve_mixed_precision("auto", device_type or planned_device_type())
    other = other_precision(choice)
    return {
        "hfgen": {"mixed_precision": "auto", "precision": choice, "precision_reason": reason},
        "hfgen_other_precision": {"mixed_precision": other, "precision": other,
                                  "precision_reason": f"fixed: the precision auto did not pick here (auto: {precision_name(choice)})"},
    }


def precision_used(eval_results: dict) -> dict:
    """{"precision", "precision_reason"} an hfgen run recorded in its `eval_results.json`: what it trained in, and why."""
    return {"precision": eval_results["mixed_precision"], "precision_reason": eval_results["mixed_precision_reason"]}


def told(entry: dict) -> str:
    """What a contender with precision ``entry`` is given as its ``precision`` setting: hfgen's arms their
    `train.mixed_precision` (``auto`` for ``hfgen``), a peer the precision chosen for it."""
    return entry.get("mixed_precision", entry["precision"])


def peer_precisions(device_type: str = "cpu") -> tuple[str, ...]:
    """The precisions a peer is tried at: fp32 and bf16 (on CUDA, bf16 only where the GPU supports it)."""
    if device_type == "cuda":
        import torch

        return ("no", "bf16") if torch.cuda.is_bf16_supported() else ("no",)
    return ("no", "bf16")


def pick_peer_precision(measure: Callable[[str], float], trial: str, device_type: str = "cpu") -> dict:
    """Measure the peer at each of `peer_precisions` with ``measure(precision) -> throughput`` (a short trial,
    described by ``trial``) and choose the faster (fp32 on a tie): {"precision", "precision_trial", "precision_reason"}."""
    speeds = {precision: float(measure(precision)) for precision in peer_precisions(device_type)}
    best = max(speeds, key=speeds.get)
    measured = ", ".join(f"{precision_name(precision)} {speed:,.4g}" for precision, speed in speeds.items())
    return {"precision": best, "precision_trial": speeds,
            "precision_reason": f"measured: the faster in a trial of {trial} ({measured})"}


def auto_vs_best_fixed(auto: float, other: float) -> float:
    """hfgen's throughput at `auto` over the faster of it and the other fixed precision's (1.0: `auto` chose the faster)."""
    return auto / max(auto, other)


def precision_name(precision: str) -> str:
    """``no`` as "fp32", other precisions as they are."""
    return "fp32" if precision == "no" else precision
