"""Sharded engines (FSDP2): what the training engine does differently when each process holds only a shard of the
model's parameters (DTensors) instead of a whole replica (DDP).

Everything that reads or writes whole weights goes through here, so the engine, checkpoints and model selection
each have one code path for both engines:

* `gathered_state(accelerator, model)`: the model's full state dict, gathered from the shards (a collective: every
  process calls it); under DDP the model's own `state_dict()`.
* `load_full_state(accelerator, model, state)`: a full state dict put back into the (sharded) model.
* `optimizer_state` / `load_optimizer_state`: the optimizer's state, full and keyed by parameter name under FSDP2
  (torch.distributed.checkpoint's state-dict API), so a checkpoint is plain safetensors + JSON either way: never
  torch.distributed.checkpoint's own folder format, whose `.metadata` file is unpickled when read back.
* `enable_fsdp_on_cpu(accelerator)`: Accelerate only turns FSDP on for accelerators; a CPU launch that asked for it
  (`accelerate launch --use_fsdp ...` or an FSDP config file, with ACCELERATE_USE_CPU=1) would silently come up as
  plain DDP. hfgen then switches Accelerate's own FSDP2 path on over gloo, the same `fully_shard` wrapping and
  state-dict calls as on GPUs, which is what lets the CPU test suite run FSDP2.
"""

from __future__ import annotations

import logging
import os

import torch
from accelerate.utils import DistributedType

logger = logging.getLogger("hfgen")


def is_sharded(accelerator) -> bool:
    """Whether the prepared models' parameters are split across processes (FSDP)."""
    return accelerator.distributed_type == DistributedType.FSDP


def launch_asks_for_fsdp() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def enable_fsdp_on_cpu(accelerator) -> bool:
    """Turn Accelerate's FSDP2 path on for a multi-process CPU launch that asked for FSDP; returns whether it did.
    The plugin is read from the launch's FSDP settings (FSDP_* environment, as Accelerate does on GPUs)."""
    from accelerate.state import PartialState
    from accelerate.utils import FullyShardedDataParallelPlugin

    if not launch_asks_for_fsdp() or accelerator.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        from .accelerator import LaunchError

        raise LaunchError(f"FSDP version {plugin.fsdp_version} was asked for; hfgen runs FSDP2 only (fsdp_version: 2, "
                          "as in recipes/accelerate/fsdp2.yaml)")
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    accelerator.state.fsdp_plugin = plugin
    accelerator.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # what PartialState() reads elsewhere
    logger.info("FSDP2 on %d CPU processes over gloo (Accelerate enables FSDP on accelerators only; hfgen switched "
                "its FSDP2 path on because the launch asked for FSDP)", accelerator.num_processes)
    return True


def _options(**kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a DTensor (a plain tensor is its own)."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if to_local is not None else tensor


def gathered_state(accelerator, model: torch.nn.Module, everywhere: bool = False) -> dict[str, torch.Tensor] | None:
    """The full state dict of prepared `model`, every process calling. Under FSDP the shards are gathered to CPU on
    the main process (`everywhere`: on every process, for machines that each write their own checkpoints) and
    the others get None; under DDP every process gets the unwrapped model's own `state_dict()`."""
    if not is_sharded(accelerator):
        return accelerator.unwrap_model(model).state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_options(cpu_offload=not everywhere))
    for alias in parameter_aliases(model):  # a tied weight once, under the name DDP's state dict keeps it
        state.pop(alias, None)
    if everywhere:
        return {key: value.cpu() for key, value in state.items()}
    return state if accelerator.is_main_process else None


def submodule_state(accelerator, roots: list[torch.nn.Module], module: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """Under FSDP, the full state of `module`, a part of one of the prepared `roots` (e.g. the encoder inside an
    MLM objective), with its keys as the module itself names them; None under DDP (the module saves its own).
    Every process calls it; the main process gets the state."""
    if not is_sharded(accelerator):
        return None
    for root in roots:
        for name, sub in root.named_modules():
            if sub is module:
                state = gathered_state(accelerator, root)
                prefix = f"{name}." if name else ""
                return None if state is None else {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    raise ValueError(f"{type(module).__name__} is not part of a prepared model")


def load_full_state(accelerator, model: torch.nn.Module, state: dict[str, torch.Tensor], strict: bool = True):
    """Put a full state dict into prepared `model` (every process holds `state`; under FSDP each keeps its own
    shard of every tensor). Returns (missing, unexpected) keys."""
    if not is_sharded(accelerator):
        return accelerator.unwrap_model(model).load_state_dict(state, strict=strict)
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    state = dict(state)
    for alias, name in parameter_aliases(model).items():  # the tied names `gathered_state` left out
        if name in state:
            state.setdefault(alias, state[name])
    return set_model_state_dict(model, state, options=_options(strict=strict))


def parameter_aliases(model: torch.nn.Module) -> dict[str, str]:
    """{second name: first name} of every parameter registered under two names (tied weights)."""
    first: dict[int, str] = {}
    aliases = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in first:
            aliases[name] = first[id(parameter)]
        else:
            first[id(parameter)] = name
    return aliases


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # Accelerate's AcceleratedOptimizer wraps the torch one


def optimizer_state(accelerator, model: torch.nn.Module, optimizer, everywhere: bool = False) -> dict | None:
    """The optimizer's state for a checkpoint, every process calling: under FSDP gathered whole and keyed by
    parameter name (main process, or every process with `everywhere`; None elsewhere), under DDP its own."""
    if not is_sharded(accelerator):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, _inner(optimizer), options=_options(cpu_offload=not everywhere))
    return state if everywhere or accelerator.is_main_process else None


def load_optimizer_state(accelerator, model: torch.nn.Module, optimizer, state: dict) -> None:
    if not is_sharded(accelerator):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, _inner(optimizer), state, options=_options())


class TrainingObjective(torch.nn.Module):
    """Base of a method's model-plus-loss wrapper (MLM, text contrastive), the module DDP or FSDP wraps as the root.
    It passes on to Accelerate what the transformers models inside it declare: `_no_split_modules` (FSDP's
    auto-wrap units, used when the launch names no layer class) and `tie_weights` (FSDP's loading of the full
    weights unties tied parameters, such as BERT's decoder and word embeddings, and Accelerate re-ties them
    through the root's `tie_weights`: without it the MLM decoder would train apart from the embeddings)."""

    @property
    def _no_split_modules(self) -> list[str] | None:
        return no_split_modules(self)

    def tie_weights(self, *args, **kwargs) -> None:
        for module in self.modules():
            if module is not self and callable(getattr(module, "tie_weights", None)) and hasattr(module, "config"):
                module.tie_weights()


def no_split_modules(module: torch.nn.Module) -> list[str] | None:
    """The `_no_split_modules` of the transformers models inside `module` (e.g. ["BertLayer"]), for a wrapper
    that FSDP wraps as the root: Accelerate's transformer auto-wrap falls back to the root's `_no_split_modules`
    when the launch names no layer class."""
    names = []
    for sub in module.modules():
        if isinstance(sub, TrainingObjective):
            continue
        for name in getattr(sub, "_no_split_modules", None) or []:
            if name not in names:
                names.append(name)
    return names or None


def choose_wrapping_units(accelerator, models: list[torch.nn.Module]) -> None:
    """Under FSDP with transformer-layer wrapping and no layer class named by the launch, wrap the encoder's layers
    (the models' `_no_split_modules` without the embedding modules). Accelerate would take every `_no_split_modules`
    class, which for BERT includes `BertEmbeddings`; it then also shards the word embeddings inside that unit on their
    own and fails (their weight is a DTensor already). The embeddings get their own unit from Accelerate either way."""
    if not is_sharded(accelerator):
        return
    plugin = accelerator.state.fsdp_plugin
    policy = getattr(plugin.auto_wrap_policy, "func", plugin.auto_wrap_policy)
    if plugin.transformer_cls_names_to_wrap is not None or getattr(policy, "__name__", "") != "transformer_auto_wrap_policy":
        return
    names = [name for model in models for name in no_split_modules(model) or [] if not name.endswith("Embeddings")]
    if names:
        plugin.transformer_cls_names_to_wrap = list(dict.fromkeys(names))
        logger.info("FSDP wraps each %s (the encoder's layers; name others with fsdp_transformer_layer_cls_to_wrap)",
                    ", ".join(plugin.transformer_cls_names_to_wrap))


def register_forward_methods(accelerator, models: list[torch.nn.Module]) -> None:
    """Under FSDP, a prepared model's methods named in its `fsdp_forward_methods` (e.g. an objective's `embed_texts`
    for evaluation) gather the shards as `forward` does, instead of meeting sharded parameters."""
    if not is_sharded(accelerator):
        return
    from torch.distributed.fsdp import register_fsdp_forward_method

    for model in models:
        for name in getattr(model, "fsdp_forward_methods", ()):
            register_fsdp_forward_method(model, name)
