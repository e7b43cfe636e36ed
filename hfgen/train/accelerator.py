"""Accelerator set-up shared by every training method: devices, precision, seeding, threads, the
CPU allocator, and the guard against a multi-process launch that silently came up as one process."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

from ..config import Recipe
from .sharding import enable_fsdp_on_cpu

logger = logging.getLogger("hfgen")


class LaunchError(RuntimeError):
    """The processes that came up are not the ones the launch or the recipe asked for."""


def build_accelerator(recipe: Recipe, mixed_precision: str, log_with: list | None = None, method=None) -> Accelerator:
    """An `Accelerator` for `recipe.train` at `mixed_precision` (resolved from `train.mixed_precision` by
    `hfgen.train.hardware.resolve_mixed_precision`): gradient accumulation, trackers rooted in
    `output_dir/logs`, and torch threads set to the cores this process may use. A launch under an engine `method`
    does not run under (`check_distributed_engine`) stops here."""
    train = recipe.train
    if mixed_precision == "fp16" and not torch.cuda.is_available():
        raise LaunchError(
            f"{recipe.source}: train.mixed_precision: 'fp16' needs a GPU; on CPU use 'auto', 'bf16' or 'no'"
        )
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        log_with=log_with,
        project_config=ProjectConfiguration(
            project_dir=train.output_dir, logging_dir=os.path.join(train.output_dir, "logs"),
            save_on_each_node=train.save_on_each_node,
        ),
        dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()),
        step_scheduler_with_optimizer=False,  # schedulers are stepped once per optimizer step
    )
    check_process_count(accelerator, expected=train.num_processes, source=recipe.source)
    if accelerator.device.type == "cpu":
        torch.set_num_threads(cpu_threads_per_process(train.cpu_threads))
        if train.reuse_cpu_memory:
            keep_freed_cpu_memory()
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if accelerator.is_local_main_process else logging.WARNING,
    )
    enable_fsdp_on_cpu(accelerator)  # an FSDP launch on CPU processes would otherwise silently be DDP
    check_distributed_engine(accelerator.distributed_type, recipe, method)
    return accelerator


SHARDED_ENGINES = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed", "MEGATRON_LM": "Megatron-LM"}
UNSHARDED_IMAGE_METHOD = ("its networks are small convolutional ones that every device holds whole, and its evaluation "
                          "and sampling (FID, sample grids, reconstructions) run them on one process")
DDP_LAUNCH = ("accelerate launch --multi_gpu --num_processes N (or --config_file recipes/accelerate/multi_gpu.yaml; several "
              "machines: recipes/accelerate/multi_node.yaml)")


def check_distributed_engine(distributed_type, recipe: Recipe, method=None) -> None:
    """Refuse, before anything is built, a launch under an engine the method does not run under: never a hang or a
    half-sharded save. FSDP2 runs the methods whose `unshardable` attribute is None (the BERT-family: mlm, text
    contrastive, text classifier); any other method's `unshardable` says why not (a GAN trains two models, ...).
    DeepSpeed and Megatron-LM are refused for every method (not verified: see docs/scale_out.md)."""
    engine = SHARDED_ENGINES.get(getattr(distributed_type, "name", str(distributed_type)))
    if engine is None:
        return
    if engine == "FSDP":
        why = getattr(method, "unshardable", UNSHARDED_IMAGE_METHOD)
        if why is None:
            return
        also = "; the BERT-family methods (mlm, text contrastive, text classifier) run under FSDP2"
    else:
        why = (f"hfgen's saves, evaluation and resume have not been verified under {engine} (no machine with a GPU and "
               f"{engine} was available to test them)")
        also = "; the BERT-family methods (mlm, text contrastive, text classifier) also run under FSDP2: recipes/accelerate/fsdp2.yaml"
    raise LaunchError(
        f"{recipe.source}: method {recipe.method!r} does not run under {engine}: {why}. Launch it with DDP instead: {DDP_LAUNCH}{also}"
    )


def seed_everything(seed: int, accelerator: Accelerator, per_process: bool) -> None:
    """Seed python, numpy and torch. Models are built with the same seed on every process
    (`per_process=False`); the training noise then gets a stream per process (`per_process=True`)."""
    set_seed(seed + (accelerator.process_index if per_process else 0))


def check_process_count(accelerator: Accelerator, expected: int | None, source: str | None = None) -> None:
    """Refuse to train when the launch asked for several processes but only one came up.

    `accelerate launch --cpu --num_processes 2` starts ONE process (it only hands multi-CPU
    runs to MPI) yet sets MASTER_ADDR; training would go on, silently, at half the batch.
    """
    launched_for_several = "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ and not any(
        key in os.environ for key in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
    )
    if accelerator.num_processes == 1 and launched_for_several:
        raise LaunchError(
            "accelerate launch asked for several processes but only 1 came up (this is what "
            "`--cpu --num_processes N` does). For N CPU processes run: "
            "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N ..."
        )
    if expected is not None and expected != accelerator.num_processes:
        raise LaunchError(
            f"{source or 'recipe'}: train.num_processes is {expected} but {accelerator.num_processes} "
            "process(es) came up; fix the launch command or the recipe"
        )


def cpu_threads_per_process(requested: int | None = None) -> int:
    """Torch threads for one process: `requested`, else the usable cores shared among the
    processes of this machine. (`accelerate launch` sets OMP_NUM_THREADS=1, which would leave
    a single-process CPU run on one core.)"""
    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cores // local_processes)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)


def keep_freed_cpu_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process for reuse; returns whether it applied.

    By default glibc serves every allocation above 32 MB (a MiniLM embedding gradient is 47 MB, a batch
    of activations often more) with a fresh `mmap` and gives it back with `munmap` when the tensor
    is freed, so the next step page-faults the same amount of memory in again, one 4 KB page at a
    time: a measured 27 ms per MiniLM fine-tuning step for the embedding gradient's zero-fill alone,
    and 8-15% of the whole step on this CPU (the page-fault cost that Intel's PyTorch CPU guide
    fixes with jemalloc/tcmalloc). With mmap off and trimming off, freed blocks stay in the heap
    and the next step reuses warm pages. The process's memory then stays at its peak instead of
    shrinking between steps, which a training process reaches every step anyway. No effect (False)
    outside Linux/glibc, e.g. on macOS or musl; the numbers computed are unchanged either way.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


@torch.no_grad()
def sync_buffers(accelerator: Accelerator, *modules: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over processes.

    DDP keeps parameters identical but lets every rank update its own running statistics from
    its own batches; before a checkpoint or the final save, every rank must hold the same model.
    """
    if accelerator.num_processes == 1:
        return
    for module in modules:
        for buffer in accelerator.unwrap_model(module).buffers():
            if buffer.is_floating_point():
                buffer.copy_(accelerator.reduce(buffer.clone(), reduction="mean"))
