"""Model cards (rendered from `model_cards/<family>.md`) and sharing on the Hub."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import yaml

from .config import Recipe, recipe_to_dict

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "model_cards"


def render_model_card(family: str, recipe: Recipe, model, results: dict | None = None, repo_id: str | None = None) -> str:
    """The README.md for a trained model: Hub metadata (YAML front matter) and a body rendered
    from `model_cards/<family>.md` with the recipe, the model config and the results."""
    from . import __version__

    path = TEMPLATES_DIR / f"{family}.md"
    if not path.is_file():
        raise FileNotFoundError(f"no model card template for family {family!r}: expected {path}")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    results = {k: v for k, v in (results or {}).items() if v is not None}
    body = env.from_string(path.read_text()).render(
        recipe=recipe,
        recipe_yaml=yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False).strip(),
        config=model.config,
        config_json=json.dumps({k: v for k, v in model.config.to_diff_dict().items() if k != "transformers_version"}, indent=2, default=str),
        num_parameters=sum(p.numel() for p in model.parameters()),
        results=results,
        model_id=repo_id or "path/to/this/folder",
        hfgen_version=__version__,
    )
    metadata = card_metadata(recipe, results, repo_id)
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---\n\n" + body


PIPELINE_TAGS = {"gan": "unconditional-image-generation", "vae": "unconditional-image-generation"}


def card_metadata(recipe: Recipe, results: dict, repo_id: str | None) -> dict:
    """YAML metadata the Hub understands: library, tags, dataset, pipeline tag, model-index."""
    from .data.catalog import CATALOG

    entry = CATALOG.get(recipe.data.dataset)
    dataset_id = entry.hub_id if entry is not None else recipe.data.dataset
    metadata = {
        "library_name": "transformers",
        "tags": ["hfgen", recipe.method, recipe.model.type or "fine-tuned"],
        "datasets": [dataset_id],
        "license": "mit",
    }
    if recipe.method in PIPELINE_TAGS:
        metadata["pipeline_tag"] = PIPELINE_TAGS[recipe.method]
    metrics = [{"type": k, "value": v, "name": k} for k, v in results.items() if k.startswith("eval_") and isinstance(v, (int, float))]
    if metrics:
        metadata["model-index"] = [
            {
                "name": (repo_id or Path(recipe.train.output_dir).name),
                "results": [{"task": {"type": PIPELINE_TAGS.get(recipe.method, recipe.method)}, "dataset": {"name": dataset_id, "type": dataset_id, "split": recipe.data.eval_split}, "metrics": metrics}],
            }
        ]
    return metadata
