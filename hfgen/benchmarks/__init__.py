"""Benchmarks: hfgen against the reference implementation of a workload, on the same model, data and
budget, in one run, so the ratio is not skewed by a different machine or day. Each contender trains at its
best precision on the machine at hand (`hfgen.benchmarks.precision`: hfgen `train.mixed_precision: auto`, the
peer the faster of fp32 and bf16 in a short trial), since which one is faster depends on the CPU.

`WORKLOADS` maps a workload name (the subcommand of ``scripts/benchmark.py``) to the module whose
``run(quick: bool, threads: int | None) -> dict`` measures it. Peers are installed with the ``bench``
extra, never as hfgen's own dependencies. Every comparative workload returns one shape, so
``benchmark.py all`` can tabulate them without knowing each:

- ``machine``: what it ran on (`machine`: the CPU model and its bf16 support, torch's version, the threads);
- ``hfgen`` and ``peer``: one dict per contender (the peer's with a ``name``) holding its throughput,
  its quality figure, ``peak_memory`` (`hfgen.benchmarks.memory.peak_memory_mb` of a process running
  only that contender: ``{"peak_rss_mb": ...}`` on CPU, ``{"peak_cuda_mb": ...}`` on CUDA) and the
  ``precision`` it trained in with its ``precision_reason`` (the peer's also ``precision_trial``);
- ``hfgen_other_precision``: hfgen at the fixed precision `auto` did not pick, and ``auto_vs_best_fixed``:
  hfgen's throughput over the faster of the two (1.0: `auto` picked the faster);
- ``ratio``: hfgen's throughput over the peer's (>1: hfgen is faster);
- ``throughput_key``: the key of the throughput in both contender dicts (e.g. ``"tokens_per_s"``);
- ``quality_key`` and ``quality_higher_is_better``: the key of the quality figure in both, and its sense;
- ``settings``: what both shared. Extra arms (``peer_default``, ``hfgen_full_head``, ...) may sit beside them.

`run_all`'s object is keyed by workload, plus its own ``machine``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import traceback
from pathlib import Path

WORKLOADS: dict[str, str] = {
    "contrastive": "hfgen.benchmarks.contrastive",  # sentence-embedding pairs (InfoNCE) vs sentence-transformers' Trainer + MNRL
    "finetune": "hfgen.benchmarks.finetune",  # text classifier fine-tuning vs transformers' Trainer
    "gan": "hfgen.benchmarks.gan",  # DCGAN training vs the pytorch/examples loop
    "mlm": "hfgen.benchmarks.mlm",  # masked-LM pretraining vs transformers' run_mlm_no_trainer loop
    "vae": "hfgen.benchmarks.vae",  # VAE training vs pythae's VAE + BaseTrainer
    "low_label": "hfgen.benchmarks.low_label",  # image fine-tuning on 1% / 10% of labels: random init vs autoencoder vs SimCLR
    "speed_choices": "hfgen.benchmarks.speed_choices",  # each CPU speed choice of the engine on and off, on this machine
    "distill": "hfgen.benchmarks.distill",  # fine-tuned MiniLM teacher vs BiLSTM / 2-layer students, distilled and on labels alone
    "finetune_options": "hfgen.benchmarks.finetune_options",  # LoRA, gradient checkpointing, torch.compile vs full fine-tuning
    "augment": "hfgen.benchmarks.augment",  # image classifier on 1% / 10% of labels, without and with images from conditional DCGAN / VAE / DDPM
    "scale_out": "hfgen.benchmarks.scale_out",  # 1 process vs 2 processes under DDP and FSDP2, MLM and classifier
}


# The speed-ups the project promises (hfgen throughput / peer throughput); `benchmark.py all` runs these
# workloads, in this order. low_label, speed_choices, finetune_options, distill, augment and scale_out have no peer (they compare settings of hfgen), so they are not here.
TARGETS: dict[str, float] = {
    "mlm": 3.0,
    "finetune": 1.5,  # against the tuned Trainer (dynamic padding, length grouping, its faster precision)
    "contrastive": 1.5,
    "gan": 1.5,
    "vae": 1.2,
}


def run_workload(name: str, quick: bool = False, json_path: str | None = None, threads: int | None = None, **options) -> dict:
    """Run one workload, print its results as JSON, and write them to ``json_path`` when given.

    ``threads``: CPU threads per contender, for workloads whose ``run`` takes a ``threads`` argument
    (on a machine shared with other jobs, 1 thread each gives steadier ratios than oversubscribed cores).
    ``options``: the workload's own keyword arguments (``distill``'s ``sets`` and ``students``).
    """
    results = _measure(name, quick, threads, **options)
    _report(results, json_path)
    return results


def run_all(quick: bool = False, json_path: str | None = None, threads: int | None = None) -> dict:
    """Run every workload of `TARGETS` in turn; a workload that fails is recorded with its ``error`` and
    the others still run. Prints the results as one JSON object keyed by workload, then `summary_table`;
    writes the JSON to ``json_path`` when given. Each workload's dict gains ``target`` and ``target_met``; the
    object also holds the ``machine`` (`machine`) it ran on."""
    results: dict = {"machine": machine(threads)}
    for name, target in TARGETS.items():
        print(f"[benchmark all] {name}", file=sys.stderr, flush=True)
        try:
            result = _measure(name, quick, threads)
            result.update(target=target, target_met=bool(result["ratio"] >= target))
        except Exception as err:  # noqa: BLE001 (one broken workload must not hide the others' figures)
            traceback.print_exc()
            result = {"workload": name, "error": f"{type(err).__name__}: {err}", "target": target, "target_met": False}
        results[name] = result
    _report(results, json_path)
    print(summary_table(results), flush=True)
    return results


def summary_table(results: dict) -> str:
    """A Markdown table of `run_all`'s results (throughputs and precisions, ratio against its target, quality,
    peak memory, hfgen `auto` against its best fixed precision), below a line naming the machine they ran on."""
    lines = [
        _machine_line(results.get("machine") or machine()),
        "",
        "| workload | hfgen | peer | ratio | target | met | quality (hfgen / peer) | peak memory hfgen / peer | auto / best fixed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in _workload_results(results):
        target = f">= {result['target']}x" if "target" in result else "-"
        if "error" in result:
            lines.append(f"| {name} | - | - | - | {target} | FAILED: {result['error'].splitlines()[0][:120].replace('|', '/')} | - | - | - |")
            continue
        hfgen, peer = result.get("hfgen", {}), result.get("peer", {})
        speed = result.get("throughput_key")
        quality = result.get("quality_key")
        sense = "higher" if result.get("quality_higher_is_better", True) else "lower"
        quality_text = f"{quality}: {_number(hfgen.get(quality))} / {_number(peer.get(quality))} ({sense} is better)" if quality else "-"
        met = "-" if "target_met" not in result else "yes" if result["target_met"] else "no"
        auto = f"{result['auto_vs_best_fixed']:.2f}" if "auto_vs_best_fixed" in result else "-"
        lines.append(
            f"| {name} | {_speed(hfgen, speed)} | {_speed(peer, speed)} | {result['ratio']:.2f}x | {target} "
            f"| {met} | {quality_text} | {_memory(hfgen)} / {_memory(peer)} | {auto} |"
        )
    return "\n".join(lines)


def describe(name: str) -> str:
    """The first sentence of workload ``name``'s module docstring, read without importing the module (nor torch)."""
    import ast
    import importlib.util

    module = sys.modules.get(WORKLOADS[name])
    if module is not None:
        docstring = module.__doc__ or ""
    else:
        spec = importlib.util.find_spec(WORKLOADS[name])
        docstring = ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or ""
    first = " ".join(docstring.split("\n\n")[0].split())
    return first.split(": ", 1)[1] if first.startswith(f"`{name}` workload: ") else first


def failed(results: dict) -> list[str]:
    """The workloads of `run_all`'s results that did not finish."""
    return [name for name, result in _workload_results(results) if "error" in result]


def machine(threads: int | None = None) -> dict:
    """What a result was measured on: `hfgen.train.hardware.cpu_facts` (the CPU model, its bf16 support, the
    cores this process may use), ``cpu`` (the same in words), torch's version and the torch ``threads`` each
    contender used (None: the workloads' default, `cpu_threads_per_process`)."""
    import torch

    from hfgen.train.accelerator import cpu_threads_per_process
    from hfgen.train.hardware import cpu_facts

    facts = cpu_facts()
    return {**facts.as_dict(), "cpu": facts.describe(), "torch": torch.__version__, "threads": cpu_threads_per_process(threads)}


def run_in_fresh_process(module: str, *args: str, what: str) -> float:
    """Run ``python -m module *args`` in a fresh interpreter (no state, caches or memory high-water mark
    inherited from this one) and wait for it; returns its wall seconds. The module writes its results to a
    file named in ``args``. Raises RuntimeError naming ``what``, with the end of its stderr, if it fails."""
    import subprocess
    import time

    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-4000:]}")
    return time.perf_counter() - started


def comparison(workload: str, settings: dict, hfgen: dict, peer: dict, hfgen_other_precision: dict, throughput_key: str,
               quality_key: str, quality_higher_is_better: bool = True, *, threads: int, **extra) -> dict:
    """A workload's result in the shape every workload shares (see the module docstring): ``ratio`` is hfgen's
    ``throughput_key`` over the peer's, ``auto_vs_best_fixed`` hfgen's over the faster of it and
    ``hfgen_other_precision``'s; ``machine`` the one it ran on, with ``threads`` torch threads per contender;
    ``extra`` arms and figures (``peer_default``, ...) go beside."""
    from .precision import POLICY, auto_vs_best_fixed

    if hfgen.get("precision") == hfgen_other_precision.get("precision"):
        raise ValueError(f"{workload}: hfgen and hfgen_other_precision both trained in {hfgen.get('precision')!r}, "
                         "so auto_vs_best_fixed would compare a precision with itself")
    return {
        "workload": workload,
        "machine": machine(threads),
        "settings": {**settings, "precision": POLICY},
        "hfgen": hfgen,
        "peer": peer,
        "hfgen_other_precision": hfgen_other_precision,
        "ratio": hfgen[throughput_key] / peer[throughput_key],
        "auto_vs_best_fixed": auto_vs_best_fixed(hfgen[throughput_key], hfgen_other_precision[throughput_key]),
        "throughput_key": throughput_key,
        "quality_key": quality_key,
        "quality_higher_is_better": quality_higher_is_better,
        **extra,
    }


def write_contender_result(result: dict, result_path: str | Path) -> None:
    """End of a contender's own process: add its CPU seconds (``process_cpu_s``: on a shared machine a wall time
    far above them means it waited for a core, so its throughput is understated) and its ``peak_memory``
    (`hfgen.benchmarks.memory.peak_memory_mb`), and write the result for `run_contenders`."""
    import resource

    from .memory import peak_memory_mb

    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {**result, "process_cpu_s": usage.ru_utime + usage.ru_stime, "peak_memory": peak_memory_mb()}
    Path(result_path).write_text(json.dumps(result))


def run_contenders(module: str, contenders, settings: dict, folder: Path, precisions: dict[str, dict]) -> dict[str, dict]:
    """Each contender of workload ``module`` in its own fresh process, one after the other: writes
    ``folder/NAME.settings.json`` (``settings`` with NAME's ``precision`` setting, `hfgen.benchmarks.precision.told`
    of its entry in ``precisions``), runs ``python -m module NAME folder/NAME.settings.json folder/NAME.json`` (the
    module's ``__main__`` writes NAME's results there); returns {name: its precision entry, updated by those results
    (an hfgen run reports the precision it used), + ``wall_s`` of its process}."""
    from .precision import told

    results = {}
    for name in contenders:
        settings_path, result_path = Path(folder) / f"{name}.settings.json", Path(folder) / f"{name}.json"
        settings_path.write_text(json.dumps({**settings, "precision": told(precisions[name])}))
        wall = run_in_fresh_process(module, name, str(settings_path), str(result_path), what=f"benchmark contender {name}")
        results[name] = {**precisions[name], **json.loads(result_path.read_text()), "wall_s": wall}
    return results


def peer_precision_in_processes(module: str, peer: str, trial_settings: dict, folder: Path, throughput_key: str, trial: str,
                                prepare=None) -> dict:
    """`hfgen.benchmarks.precision.pick_peer_precision` for a contender that runs in its own process: contender
    ``peer`` of ``module`` trained on ``trial_settings`` (a short slice of the full run, described by ``trial``) at
    each precision, via `run_contenders` in ``folder/trial-PRECISION`` (``prepare(that folder)`` first, for files
    the contender reads beside its settings)."""
    from .precision import pick_peer_precision

    def measure(precision: str) -> float:
        trial_folder = Path(folder) / f"trial-{precision}"
        trial_folder.mkdir(parents=True, exist_ok=True)
        if prepare is not None:
            prepare(trial_folder)
        results = run_contenders(module, [peer], trial_settings, trial_folder, {peer: {"precision": precision}})
        return results[peer][throughput_key]

    return pick_peer_precision(measure, trial)


def _measure(name: str, quick: bool, threads: int | None, **options) -> dict:
    if name not in WORKLOADS:
        raise KeyError(f"unknown benchmark workload {name!r}; known: {sorted(WORKLOADS)}")
    run = importlib.import_module(WORKLOADS[name]).run
    accepted = inspect.signature(run).parameters
    if threads is not None:
        if "threads" not in accepted:
            raise ValueError(f"benchmark workload {name!r} does not take --threads")
        options = {**options, "threads": threads}
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"benchmark workload {name!r} takes no option {unknown}")
    return run(quick=quick, **options)


def _report(results: dict, json_path: str | None) -> None:
    text = json.dumps(results, indent=2, sort_keys=False, default=str)
    print(text, flush=True)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text + "\n")


def _workload_results(results: dict):
    """(name, result) of each workload in `run_all`'s results (not its ``machine``)."""
    return ((name, result) for name, result in results.items() if name != "machine")


def _machine_line(facts: dict) -> str:
    return f"Machine: {facts['cpu']}; torch {facts['torch']}; torch threads per contender: {facts['threads']}"


def _speed(entry: dict, key: str) -> str:
    """A contender's throughput as text, with the precision it trained in: "300 images_per_s (bf16)"."""
    from .precision import precision_name

    precision = entry.get("precision")
    return f"{_number(entry.get(key))} {key}" + (f" ({precision_name(precision)})" if precision else "")


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _memory(entry: dict) -> str:
    """``peak_memory`` of a contender as text: "812 MB RSS" or "2,048 MB CUDA"."""
    memory = entry.get("peak_memory") or {}
    for key, unit in (("peak_rss_mb", "RSS"), ("peak_cuda_mb", "CUDA")):
        if key in memory:
            return f"{memory[key]:,.0f} MB {unit}"
    return "-"
