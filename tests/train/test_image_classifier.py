"""`method: classifier` on images: fine-tuning an hfgen-pretrained image encoder (or one from scratch) through the
text classifier's loop, metrics, model selection and outputs; a frozen encoder (linear probe) stays put; the
output folder works with `pipeline("image-classification")`."""

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import pipeline

from hfgen.config import load_recipe
from hfgen.train import run

from .helpers import assert_same_weights, kill_after_checkpoint, restore_checkpointing

ENCODER = {"type": "hfgen-image-encoder", "hidden_sizes": [8, 16], "depths": [1, 1]}
CLASSIFY = ("data.label_column=label", "classifier.validation_size=0.25", "train.max_steps=12", "train.eval_every=6",
            "train.save_every=6", "train.learning_rate=3e-3")


@pytest.fixture
def pretrained_autoencoder(write_recipe, tmp_path):
    recipe = write_recipe("autoencoder", "train.max_steps=4", f"train.output_dir={tmp_path / 'ae'}", name="ae.yaml")
    return run(load_recipe(recipe))


def test_fine_tuning_a_pretrained_autoencoder_encoder(write_recipe, pretrained_autoencoder):
    out = run(load_recipe(write_recipe(
        "classifier", *CLASSIFY, "classifier.image_crop_scale=[0.8, 1.0]", "data.random_flip=true",
        model={"pretrained": str(pretrained_autoencoder)},
    )))

    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_examples"] == 16 and 0 <= results["eval_accuracy"] <= 1
    assert results["metric_for_best_model"] == "accuracy" and 0 < results["best_step"] <= 12
    assert results["data"]["validation"]["examples"] == 12 and results["data"]["train"]["examples"] == 36
    assert results["label_names"] == ["tl", "tr", "bl", "br"]
    assert (out / "confusion_matrix.png").is_file() and "image-classification" in (out / "README.md").read_text()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["ImageEncoderForImageClassification"] and config["id2label"]["2"] == "bl"

    classify = pipeline("image-classification", model=str(out))
    predictions = classify(Image.new("L", (40, 40), color=30), top_k=4)
    assert sorted(p["label"] for p in predictions) == ["bl", "br", "tl", "tr"]


def test_frozen_encoder_trains_the_head_only(write_recipe, pretrained_autoencoder):
    out = run(load_recipe(write_recipe(
        "classifier", *CLASSIFY, "classifier.freeze_encoder=true", model={"pretrained": str(pretrained_autoencoder)},
    )))

    before, after = load_file(pretrained_autoencoder / "model.safetensors"), load_file(out / "model.safetensors")
    encoder_keys = [k for k in after if k.startswith("image_encoder.")]
    assert encoder_keys and all(torch.equal(after[k], before[k]) for k in encoder_keys)  # BatchNorm statistics too
    assert after["classifier.weight"].shape == (4, 16)


def test_from_scratch_and_a_missing_label_column_is_named(write_recipe):
    out = run(load_recipe(write_recipe("classifier", *CLASSIFY, model=ENCODER)))
    assert "eval_accuracy" in json.loads((out / "eval_results.json").read_text())
    with pytest.raises(Exception, match="data.label_column"):
        run(load_recipe(write_recipe("classifier", "train.max_steps=1", "train.output_dir=" + str(out.parent / "nolabel"), model=ENCODER, name="nolabel.yaml")))


def test_low_label_benchmark_tabulates_every_init_and_budget(monkeypatch, tmp_path):
    from hfgen.benchmarks import low_label

    monkeypatch.setattr(low_label, "pretrained_folder", lambda name, quick: tmp_path / name)
    calls = []

    def fake_finetune(init, folder, budget, quick, work, frozen=False):
        calls.append((init, folder, budget, frozen))
        return {"test_accuracy": 0.5 + 0.01 * len(calls)}

    monkeypatch.setattr(low_label, "finetune", fake_finetune)
    results = low_label.run(quick=True)

    inits = ("random_init", "autoencoder", "simclr", "autoencoder_frozen", "simclr_frozen")
    assert [(init, budget) for init, _, budget, _ in calls] == [(init, budget) for budget in ("1%", "10%") for init in inits]
    assert calls[0][1] is None and calls[2][1] == tmp_path / "simclr" and calls[4][1:] == (tmp_path / "simclr", "1%", True)
    assert results["table"][0] == "| labels | random init | autoencoder | simclr | autoencoder, frozen | simclr, frozen |"
    assert results["table"][2].startswith("| 1% (600) | 0.5100 | 0.5200 | 0.5300 | 0.5400 | 0.5500 |")


def test_killed_run_resumes_exactly_with_crops_and_flips(write_recipe, tmp_path, monkeypatch):
    augment = ("classifier.image_crop_scale=[0.6, 1.0]", "data.random_flip=true", "train.save_every=4")
    reference = run(load_recipe(write_recipe("classifier", *CLASSIFY, *augment, f"train.output_dir={tmp_path / 'ref'}", name="ref.yaml", model=ENCODER)))
    recipe = write_recipe("classifier", *CLASSIFY, *augment, model=ENCODER)
    kill_after_checkpoint(monkeypatch, 8)  # mid-epoch (36 training images, 8 per batch)
    with pytest.raises(KeyboardInterrupt):
        run(load_recipe(recipe))
    restore_checkpointing(monkeypatch)
    out = run(load_recipe(recipe))  # resume: auto: same crops, flips, data order and best-model selection
    assert_same_weights(out, reference)
    assert json.loads((out / "eval_results.json").read_text())["best_step"] == json.loads((reference / "eval_results.json").read_text())["best_step"]


@pytest.mark.parametrize("family", ["gan", "diffusion"])
def test_synthetic_images_from_a_conditional_generator_join_the_training_split(write_recipe, tmp_path, family):
    extra = ["model.num_class_embeds=4"] if family == "diffusion" else []
    generator = run(load_recipe(write_recipe(family, "data.label_column=label", "train.max_steps=2", *extra,
                                             f"train.output_dir={tmp_path / family}", name=f"{family}.yaml")))
    out = run(load_recipe(write_recipe(
        "classifier", *CLASSIFY, f"classifier.synthetic.model={generator}", "classifier.synthetic.images_per_class=5",
        "classifier.class_weights=balanced", model=ENCODER,
    )))
    train = json.loads((out / "eval_results.json").read_text())["data"]["train"]
    assert train["real_examples"] == 36 and train["synthetic_examples"] == 20 and train["examples"] == 56


def test_synthetic_images_per_class_and_class_matching(write_recipe, tmp_path):
    from hfgen.config import RecipeError
    from hfgen.data.synthetic import generate_labelled_images

    generator = run(load_recipe(write_recipe("gan", "data.label_column=label", "train.max_steps=2",
                                             f"train.output_dir={tmp_path / 'gan'}", name="gan.yaml")))
    images = generate_labelled_images(str(generator), ["br", "tl"], 3, image_size=32, num_channels=3, seed=0)
    assert len(images) == 6 and images.labels.tolist() == [0, 0, 0, 1, 1, 1]
    row = images[0]
    assert row["pixel_values"].dtype == torch.uint8 and row["pixel_values"].shape == (3, 32, 32)
    again = generate_labelled_images(str(generator), ["br", "tl"], 3, image_size=32, num_channels=3, seed=0)
    assert torch.equal(images.pixel_values, again.pixel_values)  # seeded
    with pytest.raises(ValueError, match="no class named"):
        generate_labelled_images(str(generator), ["tl", "giraffe"], 1, image_size=28, num_channels=1)
    unconditional = run(load_recipe(write_recipe("gan", "train.max_steps=2", f"train.output_dir={tmp_path / 'u'}", name="u.yaml")))
    with pytest.raises(RecipeError, match="classifier.synthetic.model: .*unconditional"):
        run(load_recipe(write_recipe("classifier", *CLASSIFY, f"classifier.synthetic.model={unconditional}", model=ENCODER)))
