"""Model cards: every template in model_cards/ is rendered by a real run, its metadata is what the Hub
understands, and its usage code runs against the saved folder."""

import re

import pytest
from huggingface_hub import ModelCard

import hfgen
from hfgen.hub import LOCAL_MODEL_ID, PIPELINE_TAGS, TEMPLATES_DIR

from .families import COVERED_ELSEWHERE, FAMILIES, PENDING

FAMILY_IDS = [f.name for f in FAMILIES]


def test_hub_every_card_template_is_covered_by_a_family():
    templates = {path.stem for path in TEMPLATES_DIR.glob("*.md")}
    missing = templates - set(FAMILY_IDS) - set(PENDING) - set(COVERED_ELSEWHERE)
    assert not missing, f"model_cards/{sorted(missing)}.md: add a HubFamily line for it in tests/hub/families.py"
    assert set(PENDING) <= templates - set(FAMILY_IDS), "a pending family is covered now: remove it from PENDING"


@pytest.mark.parametrize("name", FAMILY_IDS)
def test_hub_card_metadata_parses_as_the_hub_reads_it(pushed_families, name):
    _, _, pushed = pushed_families
    p = pushed[name]
    text = (p.folder / "README.md").read_text()

    card = ModelCard(text)

    data = card.data
    assert data.library_name == {"sentence_encoder": "sentence-transformers"}.get(name, "transformers")
    assert {"hfgen", p.family.method} <= set(data.tags)
    assert data.license and not data.datasets  # the families train on local folders: no Hub dataset id to link
    assert data.pipeline_tag == (p.family.pipeline_tag or PIPELINE_TAGS[p.family.method])
    if any(key.startswith("eval_") for key in (p.folder / "eval_results.json").read_text().split('"')):
        assert data.eval_results, "eval_* results belong in the model-index"
        assert all(result.metric_value is not None and result.dataset_name for result in data.eval_results)
    assert f"hfgen {hfgen.__version__}" in card.text
    assert "## Limitations" in card.text
    if p.family.method in ("gan", "vae"):
        assert "sample_grid.png" in card.text and (p.folder / "sample_grid.png").is_file()


@pytest.mark.parametrize("name", FAMILY_IDS)
def test_hub_card_usage_code_runs_against_the_saved_folder(pushed_families, name, tmp_path, monkeypatch):
    _, _, pushed = pushed_families
    p = pushed[name]
    card = (p.folder / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    assert snippets and all(LOCAL_MODEL_ID in code for code in snippets)
    assert all(len([line for line in code.splitlines() if line.strip()]) <= 6 for code in snippets)

    monkeypatch.chdir(tmp_path)
    for code in snippets:
        scope = {"__name__": "card_snippet"}
        exec(p.family.snippet_setup, scope)  # noqa: S102  (the user's own inputs the card names)
        exec(code.replace(LOCAL_MODEL_ID, str(p.folder)), scope)  # noqa: S102  (our own card)


@pytest.mark.parametrize("name", FAMILY_IDS)
def test_hub_nothing_pushed_names_a_path_of_the_training_machine(pushed_families, name, tmp_path_factory):
    """Configs, card, recipe.yaml and eval_results.json name data and models as the recipe did, never by where they
    lay here (every family trains from tmp folders, the classifier from another family's absolute output path)."""
    import sysconfig

    from hfgen.hub import files_to_push

    _, _, pushed = pushed_families
    folder = pushed[name].folder
    machine = [str(tmp_path_factory.getbasetemp()), sysconfig.get_paths()["purelib"], "site-packages"]
    checked = 0
    for relative in files_to_push(folder):
        if relative.endswith((".json", ".md", ".yaml", ".txt", ".py")):
            text = (folder / relative).read_text()
            assert not [m for m in machine if m in text], (relative, [m for m in machine if m in text])
            checked += 1
    assert checked >= 4  # config.json, README.md, recipe.yaml, eval_results.json at least
