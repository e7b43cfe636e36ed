"""Changes to a model before training, written once for every method: LoRA adapters (Hu et al. 2021, through
peft) for the text methods, gradient checkpointing and parameter counts for the engine.

- `apply_lora(model, section, task)`: the classifier (`classifier.lora`) or sentence encoder (`contrastive.lora`)
  with its pretrained weights frozen and LoRA updates on the target layers. A classifier becomes a `PeftModel`
  (its head in `modules_to_save`, trained whole); a sentence encoder keeps its class and wraps its `encoder`.
- `lora_adapter(model)`: the `PeftModel` in a model (itself or a submodule), or None.
- `save_adapter(adapter, folder)` and `merge_lora(model)`: what the final save writes (the adapter in `adapter/`,
  the merged stock model at the root).
- `enable_gradient_checkpointing(model)`: transformers' checkpointing on every outermost `PreTrainedModel` in
  `model` that supports it (non-reentrant, so frozen embeddings and dropout behave).

peft is an optional dependency (``pip install 'hfgen[peft]'``): a recipe with a `lora:` section says so when it is
missing, before anything trains.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from ..config import LoraSection, RecipeError

logger = logging.getLogger("hfgen")

PEFT_TASKS = {"single_label": "SEQ_CLS", "multi_label": "SEQ_CLS", "regression": "SEQ_CLS", "token": "TOKEN_CLS",
              "sentence_encoder": "FEATURE_EXTRACTION"}


def _peft(where: str):
    try:
        import peft
    except ImportError:
        raise RecipeError(f"{where}: lora needs peft: pip install 'hfgen[peft]' (or pip install peft)") from None
    return peft


def adapter_base_name(pretrained: str | None) -> str | None:
    """The base model an adapter's config names: a packaged alias's Hub id (what peft can fetch elsewhere), else
    the recipe's reference without machine paths."""
    from ..pretrained import PRETRAINED
    from ..sharing import shareable

    if pretrained in PRETRAINED:
        return PRETRAINED[pretrained].hub_id
    return shareable(pretrained)


def apply_lora(model: nn.Module, section: LoraSection, task: str, where: str, base_model: str | None = None) -> nn.Module:
    """`model` with LoRA adapters for `task` (a `classifier.task`, or ``"sentence_encoder"``); `base_model`: the
    recipe's `model.pretrained`, named in the adapter's config as `adapter_base_name` gives it."""
    peft = _peft(where)
    base_model = adapter_base_name(base_model)
    config = peft.LoraConfig(
        task_type=PEFT_TASKS[task], r=section.r, lora_alpha=section.alpha, lora_dropout=section.dropout,
        target_modules=section.target_modules, modules_to_save=section.modules_to_save,
    )  # fmt: skip
    target = model.encoder if task == "sentence_encoder" else model
    try:
        adapted = peft.get_peft_model(target, config)
    except ValueError as error:  # e.g. no default target modules for this architecture, or none matched
        raise RecipeError(f"{where}: lora: {error}") from None
    if base_model is not None:
        for adapter_config in adapted.peft_config.values():
            adapter_config.base_model_name_or_path = base_model
    counts = count_parameters([adapted])
    trainable, total = counts["trainable_parameters"], counts["parameters"]
    logger.info("LoRA r=%d alpha=%g on %s: %s of %s parameters train (%.2f%%)", section.r, section.alpha,
                sorted(next(iter(adapted.peft_config.values())).target_modules), f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    if task == "sentence_encoder":
        model.encoder = adapted
        return model
    return adapted


def lora_adapter(model: nn.Module):
    """The peft `PeftModel` inside `model` (the model itself or a submodule), or None."""
    try:
        from peft import PeftModel
    except ImportError:
        return None
    return next((m for m in model.modules() if isinstance(m, PeftModel)), None)


def save_adapter(adapter, folder: str | Path) -> None:
    """The adapter alone (adapter_config.json, adapter_model.safetensors): `PeftModel.from_pretrained(base, folder)`."""
    adapter.save_pretrained(str(folder), safe_serialization=True, save_embedding_layers=False)  # no base-config lookup (network)
    # peft's own README is an empty template that names the base by the path it was loaded from: write what is true
    config = next(iter(adapter.peft_config.values()))
    base = config.base_model_name_or_path
    (Path(folder) / "README.md").write_text(
        "---\nlibrary_name: peft\n" + (f"base_model: {base}\n" if base and "/" in base else "") + "tags:\n- lora\n- hfgen\n---\n\n"
        f"# LoRA adapter (r={config.r}, alpha={config.lora_alpha}) of `{base}`\n\n"
        "Trained with hfgen. The folder above this one holds the model with this adapter merged into its weights (load that\n"
        "with transformers as usual); this is the adapter alone, for peft:\n\n"
        f"```python\nfrom peft import PeftModel\n\nmodel = PeftModel.from_pretrained(base_model, \"adapter\")  # base_model: `{base}` loaded as in training\n```\n"
    )


def load_adapter_weights(adapter, folder: str | Path) -> None:
    """Put the adapter weights `save_adapter` wrote into `adapter` (e.g. the best model of a LoRA classifier)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from .checkpoint import safetensors_device

    device = next(adapter.parameters()).device
    result = set_peft_model_state_dict(adapter, load_file(str(Path(folder) / "adapter_model.safetensors"), device=safetensors_device(device)))
    if result.unexpected_keys:
        raise RuntimeError(f"{folder}: adapter weights do not fit the model: unexpected {result.unexpected_keys[:5]}")


def merge_lora(model: nn.Module) -> nn.Module:
    """`model` with every LoRA update merged into its base weights and peft's wrappers removed: the stock model
    (a `BertForSequenceClassification`, or a sentence encoder around a `BertModel`). In place; returns it."""
    adapter = lora_adapter(model)
    if adapter is None:
        return model
    merged = adapter.merge_and_unload()
    if adapter is model:
        return merged
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is adapter:
                setattr(parent, name, merged)
                return model
    return model


def enable_gradient_checkpointing(model: nn.Module, where: str) -> None:
    """Gradient checkpointing on the outermost transformers models inside `model`; a RecipeError when none supports it."""
    from transformers import PreTrainedModel

    enabled, seen = [], set()
    for module in model.modules():
        if id(module) in seen or not isinstance(module, PreTrainedModel):
            continue
        seen.update(id(m) for m in module.modules())
        if module.supports_gradient_checkpointing:
            options = {"use_reentrant": False}
            if hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5.2x names it so
                module.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
            else:
                module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
            enabled.append(type(module).__name__)
    if not enabled:
        raise RecipeError(f"{where}: train.gradient_checkpointing: {type(model).__name__} has no transformers encoder that "
                          "supports it (it applies to BERT-family encoders); set it to false")
    logger.info("gradient checkpointing on %s", ", ".join(enabled))


def count_parameters(models: list[nn.Module]) -> dict:
    """{"parameters", "trainable_parameters"} over `models` (shared tensors once)."""
    params = {id(p): p for model in models for p in model.parameters()}.values()
    return {"parameters": sum(p.numel() for p in params), "trainable_parameters": sum(p.numel() for p in params if p.requires_grad)}


__all__ = ["adapter_base_name", "apply_lora", "count_parameters", "enable_gradient_checkpointing", "load_adapter_weights", "lora_adapter",
           "merge_lora", "save_adapter"]
