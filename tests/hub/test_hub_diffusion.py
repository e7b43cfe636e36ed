"""A `method: diffusion` folder pushed to a (local) Hub loads by repo id as a diffusers pipeline where hfgen is not
installed, and hfgen's own tools (generate, evaluate) read it by repo id too."""

import json
import subprocess
import sys

import pytest
import yaml

from hfgen.config import load_recipe
from hfgen.hub import push_to_hub
from hfgen.train import run


@pytest.fixture
def conditional_ddpm(tmp_path, tiny_images):
    recipe = {
        "method": "diffusion",
        "model": {"type": "unet2d", "sample_size": 28, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
                  "layers_per_block": 1, "norm_num_groups": 4, "down_block_types": ["DownBlock2D", "DownBlock2D"],
                  "up_block_types": ["UpBlock2D", "UpBlock2D"], "num_class_embeds": 4},
        "data": {"dataset": str(tiny_images), "label_column": "label"},
        "diffusion": {"num_train_timesteps": 20, "num_inference_steps": 2, "num_sample_images": 4},
        "train": {"output_dir": str(tmp_path / "ddpm"), "max_steps": 2, "batch_size": 8, "save_every": None, "log_every": 1,
                  "sample_every": None, "cpu_threads": 1, "mixed_precision": "no", "report_to": "jsonl"},
    }
    (tmp_path / "ddpm.yaml").write_text(yaml.safe_dump(recipe))
    return run(load_recipe(tmp_path / "ddpm.yaml"))


def test_pushed_pipeline_loads_by_repo_id_without_hfgen(conditional_ddpm, hub_env, hub_repo_id, hub_server, tmp_path):
    from hfgen.generation import load_generator

    repo = hub_repo_id("ddpm")
    push_to_hub(conditional_ddpm, repo)
    files = hub_server.files(repo)
    assert {"model_index.json", "pipeline_hfgen_ddpm.py", "unet/config.json", "scheduler/scheduler_config.json", "README.md"} <= set(files)
    assert not any(name.startswith("checkpoints/") for name in files)
    assert repo.encode() in files["README.md"] and b"path/to/this/folder" not in files["README.md"]

    script = f"""
import sys, torch
sys.modules["hfgen"] = None
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({repo!r}, trust_remote_code=True)
images = pipe(class_labels=["br", 0], num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(0)).images
print(type(pipe).__name__, tuple(images.shape))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=hub_env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-5:] == ["ClassConditionalDDPMPipeline", "(2,", "1,", "28,", "28)"]

    generator = load_generator(repo, device="cpu")  # by repo id, stock diffusers classes only
    local = load_generator(str(conditional_ddpm), device="cpu")
    assert generator.config.id2label == local.config.id2label
    import torch

    assert torch.equal(generator.generate(2, seed=0), local.generate(2, seed=0))
    assert json.loads(files["model_index.json"])["_class_name"] == ["pipeline_hfgen_ddpm", "ClassConditionalDDPMPipeline"]
