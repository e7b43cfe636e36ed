"""`method: diffusion` end to end on a tiny image set: a diffusers pipeline folder that loads without hfgen,
conditional sampling, exact resume, and the generator tools (generate.py, evaluate.py, push) on it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hfgen.config import RecipeError, load_recipe
from hfgen.train import run

from .helpers import assert_same_weights, kill_after_checkpoint, read_metrics, restore_checkpointing

ROOT = Path(__file__).resolve().parents[2]


def test_ddpm_run_writes_a_diffusers_pipeline_folder(write_recipe):
    from diffusers import DDPMPipeline, DDPMScheduler, DiffusionPipeline, UNet2DModel

    out = run(load_recipe(write_recipe("diffusion")))
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline"
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert not (out / "config.json").exists()
    for name in ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json"):
        assert str(out.parent) not in (out / name).read_text()  # no machine paths in what is shared
    card = (out / "README.md").read_text()
    assert "library_name: diffusers" in card and "pipeline_tag: unconditional-image-generation" in card
    assert (out / "sample_grid.png").is_file()
    assert [m["step"] for m in read_metrics(out) if "loss" in m] == [1, 2, 3, 4, 5, 6]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["steps"] == 6 and results["sampler"] == "ddim"

    pipe = DiffusionPipeline.from_pretrained(out)
    assert isinstance(pipe, DDPMPipeline) and isinstance(pipe.scheduler, DDPMScheduler)
    assert pipe.scheduler.config.num_train_timesteps == 50 and pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    images = pipe(batch_size=2, num_inference_steps=3, output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 28, 28, 1) and 0 <= images.min() and images.max() <= 1
    assert UNet2DModel.from_pretrained(out, subfolder="unet").config.num_class_embeds is None


def test_saved_unet_is_the_ema_weights(write_recipe):
    from diffusers import UNet2DModel

    ema = run(load_recipe(write_recipe("diffusion", "diffusion.ema_decay=0.5", "diffusion.ema_warmup=false", name="ema.yaml")))
    plain = UNet2DModel.from_pretrained(ema, subfolder="unet")
    from hfgen.train.checkpoint import list_checkpoints
    from safetensors.torch import load_file

    trained = load_file(list_checkpoints(ema)[-1] / "model.safetensors")  # the training weights
    saved = plain.state_dict()
    assert any(not torch.equal(saved[k], trained[k]) for k in trained if trained[k].is_floating_point())


def test_conditional_ddpm_loads_without_hfgen_and_samples_the_requested_classes(write_recipe, tmp_path):
    out = run(load_recipe(write_recipe("diffusion", "data.label_column=label", "model.num_class_embeds=4")))
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_hfgen_ddpm", "ClassConditionalDDPMPipeline"]
    assert {int(k): v for k, v in index["id2label"].items()} == {0: "tl", 1: "tr", 2: "bl", 3: "br"}
    assert (out / "pipeline_hfgen_ddpm.py").is_file()

    # a fresh process where importing hfgen fails: only diffusers and the folder's own pipeline file
    script = f"""
import sys, torch
sys.modules["hfgen"] = None
from diffusers import DiffusionPipeline, DDIMScheduler
try:
    DiffusionPipeline.from_pretrained({str(out)!r})
    raise SystemExit("custom pipeline code loaded without trust_remote_code")
except ValueError as error:
    assert "trust_remote_code" in str(error), error
pipe = DiffusionPipeline.from_pretrained({str(out)!r}, trust_remote_code=True)
pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
a = pipe(class_labels=["tl", "tl"], num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(0)).images
b = pipe(class_labels=[3, 3], num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(0)).images
assert a.shape == (2, 1, 28, 28) and not torch.equal(a, b)
print(type(pipe).__name__)
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ClassConditionalDDPMPipeline")


def test_conditional_sampling_gives_the_requested_class():
    """A deterministic toy: a UNet whose 'noise prediction' depends only on the class steers DDIM to a
    class-specific image, so sampling with labels [0, 1] must give two different, label-determined images."""
    from diffusers import DDPMScheduler, UNet2DModel

    from hfgen.diffusion import DiffusionGenerator

    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=[4, 8], layers_per_block=1,
                       norm_num_groups=2, down_block_types=["DownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "UpBlock2D"],
                       num_class_embeds=2)
    schedule = DDPMScheduler(num_train_timesteps=20, prediction_type="sample").config
    targets = torch.stack([torch.full((1, 8, 8), -1.0), torch.full((1, 8, 8), 1.0)])

    def predict_x0(sample, timestep, class_labels=None):  # a perfect x0-predictor for two one-image classes
        return type("Out", (), {"sample": targets[class_labels]})()

    generator = DiffusionGenerator(unet, schedule, id2label={0: "dark", 1: "light"}, num_inference_steps=5)
    unet.forward = predict_x0
    images = generator.generate(4, seed=0, labels=[0, 1, 1, 0])
    assert torch.allclose(images[[0, 3]], torch.zeros(2, 1, 8, 8), atol=1e-4)
    assert torch.allclose(images[[1, 2]], torch.ones(2, 1, 8, 8), atol=1e-4)
    assert torch.equal(generator.generate(4, seed=0).flatten(1).mean(1).round(), torch.tensor([0.0, 1.0, 0.0, 1.0]))  # classes cycle
    with pytest.raises(ValueError, match="class ids"):
        generator.generate(2, seed=0, labels=[0, 2])


def test_interrupted_ddpm_resumes_exactly(write_recipe, tmp_path, monkeypatch):
    common = ["train.max_steps=6", "train.save_every=2", "train.sample_every=null"]
    reference = run(load_recipe(write_recipe("diffusion", *common, "data.label_column=label", "model.num_class_embeds=4",
                                             f"train.output_dir={tmp_path / 'reference'}", name="ref.yaml")))
    recipe = write_recipe("diffusion", *common, "data.label_column=label", "model.num_class_embeds=4")
    kill_after_checkpoint(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run(load_recipe(recipe))
    restore_checkpointing(monkeypatch)
    out = run(load_recipe(recipe))
    assert_same_weights(out, reference)  # the EMA UNet: EMA state, optimizer, data order and noise all resumed


def test_generate_and_evaluate_scripts_take_a_pipeline_folder(write_recipe, tmp_path, tiny_images):
    from PIL import Image

    from hfgen.cli import generate_main
    from hfgen.diffusion import DiffusionGenerator
    from hfgen.evaluation import model_kind
    from hfgen.generation import load_generator
    from hfgen.metrics.features import evaluate_generator

    out = run(load_recipe(write_recipe("diffusion", "data.label_column=label", "model.num_class_embeds=4")))
    assert model_kind(str(out)) == "generator"
    generate_main(["--model", str(out), "--num-images", "4", "--out", str(tmp_path / "grid.png"), "--labels", "tl", "br"])
    assert Image.open(tmp_path / "grid.png").size[0] > 28
    generator = load_generator(str(out), device="cpu")
    assert isinstance(generator, DiffusionGenerator) and generator.config.id2label[3] == "br"

    class Pixels:  # a stand-in extractor: downsampled pixels as features
        key = name = "pixels"

        def __call__(self, images):
            return torch.nn.functional.avg_pool2d(images, 7).flatten(1)

    results = evaluate_generator(generator, Pixels(), str(tiny_images), "test", num_samples=8, num_real=8)
    assert results["num_generated"] == 8 and results["fid"] >= 0


def test_bad_diffusion_recipes_fail_before_training(write_recipe):
    with pytest.raises(RecipeError, match="model.type: unet2d"):
        run(load_recipe(write_recipe("diffusion", model={"type": "hfgen-vae"})))
    with pytest.raises(RecipeError, match="num_class_embeds is 3 .* 4 classes"):
        run(load_recipe(write_recipe("diffusion", "data.label_column=label", "model.num_class_embeds=3")))
    with pytest.raises(RecipeError, match="data.label_column is not"):
        run(load_recipe(write_recipe("diffusion", "model.num_class_embeds=4")))
    with pytest.raises(RecipeError, match="unknown key 'model.block_channels'"):
        load_recipe(write_recipe("diffusion", "model.block_channels=[8]"))
    with pytest.raises(RecipeError, match="diffusion.beta_schedule"):
        load_recipe(write_recipe("diffusion", "diffusion.beta_schedule=cosine"))
