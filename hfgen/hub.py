"""Model cards (rendered from `model_cards/<family>.md`) and sharing on the Hub."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jinja2
import yaml

from .config import Recipe, recipe_to_dict
from .sharing import NAME_KEYS, is_machine_path, shareable, shareable_recipe, shareable_tree

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "model_cards"

logger = logging.getLogger("hfgen")


def render_model_card(
    family: str, recipe: Recipe, model, results: dict | None = None, repo_id: str | None = None, pipeline_tag: str | None = None
) -> str:
    """The README.md for a trained model: Hub metadata (YAML front matter) and a body rendered
    from `model_cards/<family>.md` with the recipe, the model config and the results."""
    from . import __version__

    path = TEMPLATES_DIR / f"{family}.md"
    if not path.is_file():
        raise FileNotFoundError(f"no model card template for family {family!r}: expected {path}")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    results = shareable_tree({k: v for k, v in (results or {}).items() if v is not None})
    metadata = card_metadata(recipe, results, repo_id, pipeline_tag=pipeline_tag,
                             library_name=LIBRARY_NAMES.get(family, "transformers"))
    recipe = shareable_recipe(recipe)  # a card is for sharing: paths of this machine become names
    config = shareable_tree({k: v for k, v in model.config.to_diff_dict().items() if k != "transformers_version"}, NAME_KEYS)
    body = env.from_string(path.read_text()).render(
        recipe=recipe,
        recipe_yaml=yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False).strip(),
        config=model.config,
        config_json=json.dumps(config, indent=2, default=str),
        num_parameters=sum(p.numel() for p in model.parameters()),
        results=results,
        model_id=repo_id or LOCAL_MODEL_ID,
        hfgen_version=__version__,
    )
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---\n\n" + body


PIPELINE_TAGS = {"gan": "unconditional-image-generation", "vae": "unconditional-image-generation", "mlm": "fill-mask", "contrastive": "sentence-similarity", "classifier": "text-classification"}


LIBRARY_NAMES = {"ddpm": "diffusers", "sentence_encoder": "sentence-transformers"}
"""The card family -> the library the Hub shows (and whose loading snippet it offers); others: transformers."""


def card_metadata(recipe: Recipe, results: dict, repo_id: str | None, pipeline_tag: str | None = None,
                  library_name: str = "transformers") -> dict:
    """YAML metadata the Hub understands: library, tags, dataset, pipeline tag, model-index.

    `pipeline_tag` overrides the method's `PIPELINE_TAGS` entry where it depends on the recipe
    (a classifier's token task is token-classification; an image classifier, image-classification)."""
    pipeline_tag = pipeline_tag or PIPELINE_TAGS.get(recipe.method)
    from .data.catalog import CATALOG

    entry = CATALOG.get(recipe.data.dataset)
    dataset_id = entry.hub_id if entry is not None else recipe.data.dataset
    local = entry is None and (is_machine_path(dataset_id) or Path(dataset_id).exists())  # not a Hub dataset id
    dataset_id = shareable(dataset_id)
    metadata = {
        "library_name": library_name,
        "tags": ["hfgen", recipe.method, recipe.model.type or "fine-tuned"],
        **({} if local else {"datasets": [dataset_id]}),
        "license": "mit",
    }
    if pipeline_tag:
        metadata["pipeline_tag"] = pipeline_tag
    metrics = [{"type": k, "value": v, "name": k} for k, v in results.items() if k.startswith("eval_") and isinstance(v, (int, float))]
    if metrics:
        metadata["model-index"] = [
            {
                "name": (repo_id or Path(recipe.train.output_dir).name),
                "results": [{"task": {"type": pipeline_tag or recipe.method}, "dataset": {"name": dataset_id, "type": dataset_id, "split": recipe.data.eval_split}, "metrics": metrics}],
            }
        ]
    return metadata


# --------------------------------------------------------------------------------------------
# Sharing on the Hub
# --------------------------------------------------------------------------------------------

LOCAL_MODEL_ID = "path/to/this/folder"
"""The model id a card shows (in its `from_pretrained` code) until the folder is pushed; the push puts the repo id there."""

PUSH_IGNORE = ("checkpoints/*", "logs/*", "samples/step-*", ".tmp*", "*/.tmp*", "*.tmp", ".git/*", ".cache/*", "*/.cache/*", "__pycache__/*", "*/__pycache__/*")
"""What a finished run's folder keeps to itself: resumable checkpoints (they go to `hub.checkpoint_branch`
with `hub.push_checkpoints`), logs, intermediate sample grids, interrupted writes, caches."""


def hub_endpoint() -> str | None:
    """`HF_ENDPOINT`, read when called. huggingface_hub reads it once, at import; hfgen reads it at each
    push and pull, so a process can be pointed at a mirror (or a local test Hub) after that import."""
    import os

    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or None


def hub_api(token: str | None = None):
    """An `HfApi` on `hub_endpoint()`; the token comes from the standard places (HF_TOKEN, `hf auth login`)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(), token=token)


def prepare_for_hub(model) -> None:
    """Make `model.save_pretrained` write what loading without hfgen needs. For hfgen's own model classes
    (`hfgen.models.*`) that is `register_for_auto_class`: `auto_map` in config.json and a copy of the
    self-contained model folder's code beside the weights, so `from_pretrained(..., trust_remote_code=True)`
    works where hfgen is not installed. transformers' own classes (BERT, ...) need nothing, nor do hfgen classes
    whose folder is stock (`saves_code = False`: the sentence encoder saves a BERT + sentence-transformers modules)."""
    model_class, config_class = type(model), type(model.config)
    if not model_class.__module__.startswith("hfgen.models.") or not getattr(model_class, "saves_code", True):
        return
    registered = _registered_auto_classes(config_class)  # {Auto class name: model class}
    config_class.register_for_auto_class("AutoConfig")
    model_class.register_for_auto_class(next((name for name, cls in registered.items() if cls is model_class), "AutoModel"))
    # every head of this config whose code is in the same (copied) file loads too: a saved autoencoder
    # also opens with AutoModel (its encoder) or AutoModelForImageClassification (a new head)
    module = model_class.__module__
    heads = {name: f"{module.rsplit('.', 1)[-1]}.{cls.__name__}" for name, cls in registered.items() if cls.__module__ == module}
    model.config.auto_map = {**heads, **(getattr(model.config, "auto_map", None) or {})}


def _registered_auto_classes(config_class: type) -> dict[str, type]:
    """{transformers Auto class name: model class} registered for `config_class` (hfgen/models/__init__.py)."""
    import transformers

    found = {}
    for name in ["AutoModel"] + sorted(n for n in dir(transformers) if n.startswith("AutoModelFor")):
        mapping = getattr(getattr(transformers, name, None), "_model_mapping", None)
        try:
            if mapping is not None and config_class in mapping:
                found[name] = mapping[config_class]
        except (KeyError, ValueError, TypeError):
            continue
    return found


def files_to_push(folder: str | Path, ignore: tuple[str, ...] = PUSH_IGNORE) -> list[str]:
    """Paths (relative, '/'-separated, sorted) of the files of `folder` that a push uploads."""
    import fnmatch

    folder = Path(folder)
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return [p for p in paths if not any(fnmatch.fnmatch(p, pattern) for pattern in ignore)]


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                commit_message: str | None = None, token: str | None = None, create_pr: bool = False,
                ignore: tuple[str, ...] = PUSH_IGNORE):
    """Upload a saved model folder (a finished run's `output_dir`, or any `save_pretrained` folder) to the
    Hub repo `repo_id` in one commit; returns huggingface_hub's `CommitInfo` (`.oid`, `.commit_url`).

    Creates the repo (`private` applies only then) and the branch `revision` (from main) when missing.
    Uploads the model, tokenizer/processor files, model card, `eval_results.json`, `recipe.yaml` and
    sample grids; not checkpoints, logs or step grids (`PUSH_IGNORE`). The card's usage code gets the
    repo id. Files that did not change are not uploaded again, and a push that changes nothing makes no
    commit. The token (argument, else HF_TOKEN or the `hf auth login` file) is never logged; a file that
    contains it is refused.
    """
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.utils import get_token

    folder = Path(folder)
    if not any((folder / name).is_file() for name in ("config.json", "tokenizer_config.json", "model_index.json")):
        raise ValueError(
            f"{folder} is not a saved model folder (no config.json, tokenizer_config.json or model_index.json): point "
            "it at a finished run's train.output_dir or a folder written by save_pretrained"
        )
    if not repo_id or repo_id.count("/") != 1 or any(not part for part in repo_id.split("/")):
        raise ValueError(f"repo id {repo_id!r} is not of the form namespace/name (e.g. your-name/dcgan-fashion-mnist)")
    _warn_if_not_loadable_without_hfgen(folder)
    token = token or get_token()
    paths = files_to_push(folder, ignore)
    refuse_files_holding_the_token([folder / path for path in paths], token)
    operations = []
    for path in paths:
        if path == "README.md":  # the card's usage code names the repo from now on
            card = (folder / path).read_bytes()
            operations.append(CommitOperationAdd(path, card.replace(LOCAL_MODEL_ID.encode(), repo_id.encode())))
        else:
            operations.append(CommitOperationAdd(path, str(folder / path)))
    api = hub_api(token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision not in (None, "main"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    message = commit_message or f"Upload {_model_type(folder)} with hfgen"
    info = api.create_commit(repo_id, operations, commit_message=message, revision=revision, create_pr=create_pr)
    logger.info("pushed %s to %s (%s)", folder, info.commit_url, revision or "main")
    return info


def refuse_files_holding_the_token(paths: list[Path], token: str | None = None, chunk_size: int = 8 << 20) -> None:
    """Raise ValueError naming the first file that contains the Hub token (read in chunks, so
    multi-GB weights are scanned without loading them whole); the token itself is never shown."""
    from huggingface_hub.utils import get_token

    needle = (token or get_token() or "").encode()
    if not needle:
        return
    for path in paths:
        with open(path, "rb") as file:
            tail = b""  # the end of what was read, so a token across two chunks is found
            while chunk := file.read(chunk_size):
                window = tail + chunk
                if needle in window:
                    raise ValueError(f"{path} contains your Hub token; remove it before pushing (nothing was uploaded)")
                tail = window[max(0, len(window) - len(needle) + 1):]


def push_output_dir(output_dir: str | Path, hub, recipe: Recipe | None = None):
    """Push a finished run's folder as its recipe's `hub:` section says (one commit to `hub.revision`)."""
    where = recipe.source if recipe is not None else "recipe"
    if not hub.repo_id:
        raise ValueError(f"{where}: hub.push is true but hub.repo_id is not set; set it to namespace/name")
    try:
        return push_to_hub(output_dir, hub.repo_id, private=hub.private, revision=hub.revision, commit_message=hub.commit_message)
    except Exception as err:
        raise RuntimeError(
            f"training finished and {output_dir} holds the model, but pushing it to {hub.repo_id} failed: {err}\n"
            f"push it again with: python scripts/push.py --model {output_dir} --repo-id {hub.repo_id}"
            + (f" --revision {hub.revision}" if hub.revision else "")
        ) from err


def push_checkpoint(checkpoint: str | Path, hub, output_dir: str | Path) -> None:
    """Mirror the run's kept checkpoints (and its recipe.yaml) to the branch `hub.checkpoint_branch` in one
    commit: the new checkpoint is added, ones pruned locally are deleted. A failure is logged and the run
    goes on: the next checkpoint's push uploads everything still missing."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import EntryNotFoundError

    from .train.checkpoint import CHECKPOINT_RE, list_checkpoints

    output_dir = Path(output_dir)
    try:
        api = hub_api()
        api.create_repo(hub.repo_id, private=hub.private, exist_ok=True)
        api.create_branch(hub.repo_id, branch=hub.checkpoint_branch, exist_ok=True)
        kept = [p.relative_to(output_dir).as_posix() for p in list_checkpoints(output_dir)]
        paths = ["recipe.yaml"] if (output_dir / "recipe.yaml").is_file() else []
        paths += [f"{folder}/{path}" for folder in kept for path in files_to_push(output_dir / folder, ignore=())]
        refuse_files_holding_the_token([output_dir / path for path in paths])
        operations = [CommitOperationAdd(path, str(output_dir / path)) for path in paths]
        try:
            remote = [e.path for e in api.list_repo_tree(hub.repo_id, "checkpoints", revision=hub.checkpoint_branch) if CHECKPOINT_RE.match(e.path.split("/")[-1])]
        except EntryNotFoundError:
            remote = []
        operations += [CommitOperationDelete(path, is_folder=True) for path in remote if path not in kept]
        api.create_commit(hub.repo_id, operations, commit_message=f"{Path(checkpoint).name}", revision=hub.checkpoint_branch)
        logger.info("pushed %s to %s (branch %s)", Path(checkpoint).name, hub.repo_id, hub.checkpoint_branch)
    except Exception as err:  # a network blip must not end a long run; the next push catches up
        logger.warning("could not push %s to %s (branch %s): %s", Path(checkpoint).name, hub.repo_id, hub.checkpoint_branch, err)


def download_checkpoints(hub, output_dir: str | Path) -> Path | None:
    """Fetch the checkpoints kept on `hub.checkpoint_branch` into `output_dir/checkpoints/` (each moved into place
    only once complete), so a damaged newest one can fall back to the one before; returns the newest, or None when
    the repo, the branch or its checkpoints do not exist."""
    import os
    import shutil

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    from .train.checkpoint import CHECKPOINT_RE, checkpoints_dir

    api = hub_api()
    try:
        names = sorted(e.path.split("/")[-1] for e in api.list_repo_tree(hub.repo_id, "checkpoints", revision=hub.checkpoint_branch))
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
        return None
    names = [n for n in names if CHECKPOINT_RE.match(n)]
    if not names:
        return None
    target = None
    for name in names:  # zero-padded step numbers sort in order: the newest is fetched last
        staging = Path(output_dir) / ".tmp-hub-download"
        shutil.rmtree(staging, ignore_errors=True)
        snapshot_download(hub.repo_id, revision=hub.checkpoint_branch, allow_patterns=[f"checkpoints/{name}/*"],
                          local_dir=staging, endpoint=hub_endpoint())
        target = checkpoints_dir(output_dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging / "checkpoints" / name, target)
        shutil.rmtree(staging, ignore_errors=True)
        logger.info("fetched %s from %s (branch %s)", name, hub.repo_id, hub.checkpoint_branch)
    return target


def _model_type(folder: Path) -> str:
    if (folder / "model_index.json").is_file():  # a diffusers pipeline: its class name
        name = json.loads((folder / "model_index.json").read_text()).get("_class_name")
        return str(name[-1] if isinstance(name, list) else name or "pipeline")
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type") or "model"
    except (OSError, ValueError):
        return "model"


def _warn_if_not_loadable_without_hfgen(folder: Path) -> None:
    """hfgen's own model types load without hfgen only when the folder carries their code (`auto_map`)."""
    if not (folder / "config.json").is_file():
        return
    config = json.loads((folder / "config.json").read_text())
    if str(config.get("model_type", "")).startswith("hfgen-") and not config.get("auto_map"):
        logger.warning(
            "%s has no auto_map in config.json: the pushed model will load only where hfgen is installed. "
            "Re-save it with hfgen (hfgen.hub.prepare_for_hub(model); model.save_pretrained(...)) to ship its code.", folder
        )
