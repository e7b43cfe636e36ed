"""`method: vae` end to end: the loss falls, the test ELBO is reported, the model reloads."""

import json
import math

from transformers import AutoModel

from hfgen.config import load_recipe
from hfgen.train import run

from .helpers import read_metrics


def test_vae_trains_and_reports_test_elbo(write_recipe):
    out = run(load_recipe(write_recipe("vae", "train.max_steps=40", "train.save_every=20", "train.sample_every=20", "vae.kl_warmup_steps=5")))
    losses = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5  # learning (585 -> 470 nats here), not just running
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_images"] == 16  # the whole test split, each image once
    assert math.isfinite(results["eval_elbo"]) and results["eval_elbo"] < 0
    assert results["eval_elbo"] == -(results["eval_reconstruction_nll"] + results["eval_kl"])
    assert "eval_elbo" in (out / "README.md").read_text()
    model = AutoModel.from_pretrained(out)
    assert model.generate(3, seed=1).shape == (3, 1, 28, 28)


def test_conditional_vae_run_learns_the_label_names(write_recipe):
    out = run(load_recipe(write_recipe("vae", "data.label_column=label", "train.max_steps=4", name="cvae.yaml")))
    model = AutoModel.from_pretrained(out)
    assert model.config.num_classes == 4 and model.config.id2label[3] == "br"
    assert model.generate(4, seed=0, labels=[3, 3, 3, 3]).shape == (4, 1, 28, 28)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_images"] == 16 and math.isfinite(results["eval_elbo"])
