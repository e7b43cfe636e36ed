"""Building the model a recipe names: from scratch (`model.type` + config fields) or from a
pretrained folder / Hub id (`model.pretrained`, further keys override its config)."""

from __future__ import annotations

from ..config import Recipe, RecipeError, config_field_names


def build_model(recipe: Recipe, auto_class=None, load_kwargs: dict | None = None, **config_overrides):
    """Instantiate the recipe's model with `auto_class` (default `AutoModel`).

    `config_overrides` are set by the training method (e.g. `num_classes` read off the data);
    they win over the recipe's fields only where the recipe left the field unset. `load_kwargs`
    go to `from_pretrained` itself (e.g. ``ignore_mismatched_sizes=True`` to re-initialise a head
    of another size). `model.pretrained` may be an alias of `hfgen.pretrained.PRETRAINED` (``minilm``).
    """
    import hfgen.models  # noqa: F401  (registers hfgen's model types)
    from transformers import AutoConfig, AutoModel

    auto_class = auto_class or AutoModel
    spec = recipe.model
    fields = {**config_overrides, **spec.config}
    if spec.type is not None:
        return auto_class.from_config(_config_for(recipe, fields))
    from ..pretrained import resolve_pretrained

    pretrained = resolve_pretrained(spec.pretrained)
    config = AutoConfig.from_pretrained(pretrained, revision=spec.revision)
    allowed = config_field_names(type(config))
    for key in fields:
        if key not in allowed:
            raise RecipeError(f"{recipe.source}: unknown key 'model.{key}' for the config of {spec.pretrained!r} ({type(config).__name__})")
    return auto_class.from_pretrained(pretrained, revision=spec.revision, dtype="float32", **(load_kwargs or {}), **fields)


def model_config(recipe: Recipe):
    """The recipe's model config (`model.type` + fields, or `model.pretrained`'s with the recipe's fields on top)
    without building the model, for what the data must know first (an image model's `image_size`, a text model's
    position limit)."""
    import hfgen.models  # noqa: F401  (registers hfgen's model types)
    from transformers import AutoConfig

    from ..pretrained import resolve_pretrained

    if recipe.model.type is not None:
        return _config_for(recipe, recipe.model.config)
    config = AutoConfig.from_pretrained(resolve_pretrained(recipe.model.pretrained), revision=recipe.model.revision)
    for key, value in recipe.model.config.items():
        setattr(config, key, value)
    return config


def _config_for(recipe: Recipe, fields: dict):
    """`model.type`'s config with `fields`; a value the config refuses is a recipe error naming the recipe."""
    from transformers import AutoConfig

    try:
        return AutoConfig.for_model(recipe.model.type, **fields)
    except ValueError as error:
        raise RecipeError(f"{recipe.source}: model: {error}") from None
