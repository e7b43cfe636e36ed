"""Recipes: a YAML file (plus `key.sub=value` overrides) loaded into typed dataclasses.

A recipe is the whole specification of a run. Every section is a dataclass whose fields are
documented in place; `load_recipe` checks every key, type and required field before any work
starts, and its errors name the recipe file and the key at fault (suggesting the closest valid
key for a typo).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class RecipeError(ValueError):
    """A recipe (or an override) is invalid. The message names the file and the key."""


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class ModelSection:
    """What to train. Either `type` (a registered model type and its config fields, from
    scratch) or `pretrained` (a folder or Hub id to start from; further keys override its config)."""

    type: str | None = None  # e.g. hfgen-dcgan, hfgen-vae, bert
    pretrained: str | None = None  # folder or Hub repo id to start from
    revision: str | None = None  # branch, tag or commit of `pretrained` on the Hub
    # every other key under `model:` lands here and is checked against the config class
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSection:
    """Where the examples come from and which columns hold what."""

    dataset: str  # catalog name (hfgen.data.catalog), local path, or Hub id
    train_split: str = "train"
    eval_split: str | None = "test"  # held-out split for evaluation; null to skip
    image_column: str = "image"
    label_column: str | None = None  # set for class-conditional generators and classifiers
    text_column: str = "text"
    text_pair_column: str | None = None
    max_train_samples: int | None = None  # quick runs on a slice (first N after a seeded shuffle)
    max_eval_samples: int | None = None
    on_bad_image: Literal["fail", "skip"] = "fail"  # unreadable image files: stop, or drop and count
    random_flip: bool = False  # horizontal flips as augmentation (off: Fashion-MNIST is not mirror-symmetric)
    streaming: bool = False  # iterate a larger-than-memory dataset instead of loading it
    num_workers: int = 0  # DataLoader worker processes; 0 keeps the 2-core CPU for compute


@dataclass
class TrainSection:
    """The optimisation loop, precision, checkpoints and logging."""

    output_dir: str  # everything the run writes: checkpoints, samples, logs, final model
    num_epochs: int = 1
    max_steps: int | None = None  # when set, stop after this many optimizer steps (overrides num_epochs)
    batch_size: int = 32  # per process
    eval_batch_size: int | None = None  # defaults to batch_size
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1.0e-4
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1.0e-8
    lr_scheduler: Literal["constant", "linear", "cosine", "one_cycle"] = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = None  # clip gradients to this norm; null for no clipping
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # fp16 only on GPU
    seed: int = 0
    save_every: int | None = 500  # optimizer steps between resumable checkpoints; null: only at the end
    keep_last: int = 2  # resumable checkpoints kept on disk
    resume: str = "auto"  # auto: newest complete checkpoint in output_dir; never; or a checkpoint path
    overwrite: bool = False  # allow writing into an output_dir that holds a finished run
    log_every: int = 50  # optimizer steps between logged scalars
    sample_every: int | None = 500  # image generators: steps between PNG sample grids
    eval_every: int | None = None  # steps between evaluations; null: at the end only
    report_to: Literal["auto", "tensorboard", "jsonl", "none"] = "auto"  # auto: TensorBoard if installed, else JSONL
    num_processes: int | None = None  # expected process count; the run refuses to start if it differs
    cpu_threads: int | None = None  # torch threads per process on CPU; null: cores / local processes


@dataclass
class HubSection:
    """Sharing the final model on the Hugging Face Hub."""

    push: bool = False
    repo_id: str | None = None  # namespace/name
    private: bool = False
    revision: str | None = None  # branch to push to; null: main


@dataclass
class GANSection:
    """Options of `method: gan` (hfgen.train.gan)."""

    loss: Literal["non_saturating", "hinge"] = "non_saturating"
    generator_learning_rate: float | None = None  # null: train.learning_rate
    discriminator_learning_rate: float | None = None  # null: train.learning_rate
    discriminator_steps: int = 1  # D updates per G update
    ema_decay: float | None = 0.999  # generator EMA; null to disable. The saved generator is the EMA one.
    num_sample_images: int = 64  # images in each PNG grid, from a fixed seed


@dataclass
class VAESection:
    """Options of `method: vae` (hfgen.train.vae)."""

    kl_warmup_steps: int = 0  # KL weight ramps linearly 0 -> 1 over this many steps (Bowman et al. 2016)
    num_sample_images: int = 64  # images in each PNG grid (prior samples + reconstructions)


# The method-specific section each method reads, keyed by `method`. The run functions live in
# hfgen.train.METHODS; a test checks both lists agree.
METHOD_SECTIONS: dict[str, type] = {"gan": GANSection, "vae": VAESection}


@dataclass
class Recipe:
    """A whole run. `method` picks hfgen.train.<method>; its options live in the section named
    after it (e.g. `gan:`), which may be left out to take the defaults."""

    method: str
    model: ModelSection
    data: DataSection
    train: TrainSection
    hub: HubSection = field(default_factory=HubSection)
    gan: GANSection | None = None
    vae: VAESection | None = None
    source: str | None = None  # the recipe file this came from (set by load_recipe, not YAML)

    @property
    def options(self) -> Any:
        """The method-specific section (`recipe.gan` for method gan, ...)."""
        return getattr(self, self.method)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML, apply `key.sub=value` overrides, and validate it into a `Recipe`.

    Raises `RecipeError` naming the file and the key for an unknown key (with the closest valid
    one), a wrong type, a missing required key, or an unknown method/model type.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    for override in overrides or []:
        apply_override(raw, override, where=str(path))
    return recipe_from_dict(raw, where=str(path))


def apply_override(raw: dict, override: str, where: str = "recipe") -> None:
    """Set `a.b.c=value` in the nested dict `raw`; the value is parsed as YAML (`3`, `1e-4`, `null`, `[1, 2]`)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise RecipeError(f"{where}: override {override!r} is not of the form key.sub=value")
    parts = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(
                f"{where}: override {override!r}: '{'.'.join(parts[: depth + 1])}' is a value, not a section"
            )
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        node[parts[-1]] = value


def recipe_from_dict(raw: dict, where: str = "recipe") -> Recipe:
    """Validate a nested dict (as read from YAML) into a `Recipe`."""
    raw = dict(raw)
    if "source" in raw:
        raise RecipeError(f"{where}: 'source' is set by hfgen, not by the recipe")
    method = raw.get("method")
    if method is None:
        raise RecipeError(f"{where}: missing required key 'method' (one of {sorted(METHOD_SECTIONS)})")
    if method not in METHOD_SECTIONS:
        raise RecipeError(
            f"{where}: method: unknown method {method!r}{_suggest(str(method), METHOD_SECTIONS)}; "
            f"known methods: {sorted(METHOD_SECTIONS)}"
        )
    for other in METHOD_SECTIONS:
        if other != method and raw.get(other) is not None:
            raise RecipeError(f"{where}: section '{other}' does not apply to method '{method}'; remove it")
    raw.setdefault(method, {})
    model_raw = raw.get("model")
    if model_raw is not None:
        if not isinstance(model_raw, dict):
            raise RecipeError(f"{where}: model: expected a mapping, got {model_raw!r}")
        known = {"type", "pretrained", "revision"}
        if "config" in model_raw:
            raise RecipeError(f"{where}: model.config: put config fields directly under 'model:'")
        raw["model"] = {k: v for k, v in model_raw.items() if k in known}
        raw["model"]["config"] = {k: v for k, v in model_raw.items() if k not in known}
    recipe = _build(Recipe, raw, where, prefix="")
    recipe.source = where
    _check_model_section(recipe.model, where)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict:
    """The recipe as the nested dict a YAML file would hold (model config fields flattened back)."""
    out = dataclasses.asdict(recipe)
    out.pop("source", None)
    model = out["model"]
    model.update(model.pop("config"))
    for name in METHOD_SECTIONS:
        if out.get(name) is None:
            out.pop(name, None)
    return out


def save_recipe(recipe: Recipe, path: str | os.PathLike) -> None:
    """Write the resolved recipe as YAML, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
    os.replace(tmp, path)


def _check_model_section(model: ModelSection, where: str) -> None:
    if (model.type is None) == (model.pretrained is None):
        raise RecipeError(f"{where}: model: set exactly one of 'model.type' (from scratch) or 'model.pretrained'")
    if model.type is None:
        return  # the config comes from the checkpoint; its fields are checked when it is loaded
    config_class = model_config_class(model.type, where)
    allowed = config_field_names(config_class)
    for key in model.config:
        if key not in allowed:
            raise RecipeError(
                f"{where}: unknown key 'model.{key}' for model type {model.type!r}"
                f"{_suggest(key, allowed, prefix='model.')}"
            )


def model_config_class(model_type: str, where: str = "recipe") -> type:
    """The config class registered for `model_type` (hfgen's own and every transformers type)."""
    import hfgen.models  # noqa: F401  (registers hfgen's model types)
    from transformers import CONFIG_MAPPING

    try:
        return CONFIG_MAPPING[model_type]
    except KeyError:
        known = [t for t in CONFIG_MAPPING.keys() if t.startswith("hfgen-")] + ["bert", "..."]
        raise RecipeError(
            f"{where}: model.type: unknown model type {model_type!r}"
            f"{_suggest(model_type, list(CONFIG_MAPPING.keys()))}; e.g. {known}"
        ) from None


def config_field_names(config_class: type) -> set[str]:
    """Keys a config class accepts (its dataclass fields, or its __init__ parameters)."""
    if dataclasses.is_dataclass(config_class):
        names = {f.name for f in dataclasses.fields(config_class)}
    else:
        import inspect

        names = set(inspect.signature(config_class.__init__).parameters) - {"self", "kwargs"}
    return names | {"num_labels"}


# --------------------------------------------------------------------------------------------
# Typed construction
# --------------------------------------------------------------------------------------------


def _suggest(key: str, candidates, prefix: str = "") -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


def _build(cls: type, raw: Any, where: str, prefix: str) -> Any:
    label = prefix.rstrip(".") or "recipe"
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: {label}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields or key == "source":
            raise RecipeError(
                f"{where}: unknown key '{prefix}{key}'{_suggest(str(key), [f for f in fields if f != 'source'], prefix)}"
            )
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], where, prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{where}: missing required key '{prefix}{name}'")
    return cls(**values)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting only where lossless (int -> float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, key)
            except RecipeError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise RecipeError(f"{where}: {key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value is False and "no" in args:  # YAML 1.1 reads a bare `no` as false
            return "no"
        if value in args and not isinstance(value, bool):
            return value
        raise RecipeError(f"{where}: {key}: {value!r} is not one of {list(args)}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, {} if value is None else value, where, key + ".")
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{where}: {key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], where, f"{key}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads `1e-4` (no dot) as a string; accept it as the number it plainly is
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise RecipeError(f"{where}: {key}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value
