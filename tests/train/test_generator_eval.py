"""FID during generator training: evaluated every eval_every steps with the domain extractor,
the best model kept in output_dir/best, the figures (with their provenance) in eval_results.json."""

import json

import pytest
from transformers import AutoModel

from hfgen.config import load_recipe
from hfgen.train import run

from .helpers import read_metrics


@pytest.fixture
def domain_extractor(tmp_path):
    from hfgen.models import ImageEncoderConfig, ImageEncoderForImageClassification

    model = ImageEncoderForImageClassification(ImageEncoderConfig(hidden_sizes=[8, 16], depths=[1, 1], num_labels=4))
    model.save_pretrained(tmp_path / "extractor")
    return tmp_path / "extractor"


@pytest.mark.parametrize("method", ["gan", "vae"])
def test_fid_in_training_keeps_the_best_model(write_recipe, domain_extractor, method):
    out = run(load_recipe(write_recipe(
        method, "train.eval_every=2", f"{method}.fid.extractor_model={domain_extractor}", f"{method}.fid.num_samples=16",
    )))
    logged = [m for m in read_metrics(out) if "eval_fid" in m]
    assert [m["step"] for m in logged] == [2, 4, 6]  # every eval_every, and the final one
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_num_generated"] == 16 and results["eval_num_real"] == 16
    assert str(domain_extractor) in results["eval_extractor"]
    assert results["best_fid"] == min(m["eval_fid"] for m in logged)
    assert results["best_fid_step"] in (2, 4, 6)
    best = AutoModel.from_pretrained(out / "best")
    assert best.generate(2, seed=0).shape == (2, 1, 28, 28)
    assert "eval_fid" in (out / "README.md").read_text()


def test_missing_extractor_folder_is_named_before_training(write_recipe, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gan\.fid\.extractor_model: '.*nope' does not exist"):
        run(load_recipe(write_recipe("gan", f"gan.fid.extractor_model={tmp_path / 'nope'}")))
