"""Diffusion models as diffusers pipeline folders, and the generator interface hfgen's tools share.

A folder written by `method: diffusion` is what diffusers itself writes: `model_index.json`, `unet/`
(`UNet2DModel`, safetensors) and `scheduler/` (the `DDPMScheduler` it was trained with). An unconditional model is a
`DDPMPipeline`, so `DiffusionPipeline.from_pretrained(folder)` loads it with no custom code; a class-conditional one
is a `ClassConditionalDDPMPipeline`, whose self-contained file (`hfgen/models/ddpm/pipeline_hfgen_ddpm.py`, torch and
diffusers only) the folder carries, so it loads with `trust_remote_code=True` where hfgen is not installed.

`DiffusionGenerator` wraps the UNet and the training schedule behind the interface of hfgen's DCGAN and VAE
(`generate(num_images, seed=..., labels=...)`, `config.image_size`, `save_pretrained`), so FID evaluation, sample
grids, `scripts/generate.py`, `evaluate.py` and `push.py` treat all three generator families alike. It samples with a
fast solver (DDIM by default, 50 steps) built from the training schedule.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

PIPELINE_FILE = Path(__file__).parent / "models" / "ddpm" / "pipeline_hfgen_ddpm.py"
CONDITIONAL_PIPELINE = ["pipeline_hfgen_ddpm", "ClassConditionalDDPMPipeline"]
SAMPLERS = {"ddim": "DDIMScheduler", "dpm_solver": "DPMSolverMultistepScheduler", "ddpm": "DDPMScheduler"}
"""`diffusion.sampler` -> the diffusers scheduler that samples for evaluation and generation."""


class DiffusionConfig:
    """What hfgen's generator tools read off a model's `config` (image size, channels, classes), over the UNet's."""

    def __init__(self, unet_config, id2label: dict | None = None):
        self.unet_config = unet_config
        size = unet_config.sample_size
        self.image_size = size if isinstance(size, int) else size[0]
        self.num_channels = unet_config.in_channels
        self.num_classes = unet_config.num_class_embeds or 0
        self.id2label = {int(k): str(v) for k, v in (id2label or {}).items()}

    def to_diff_dict(self) -> dict:
        return {k: v for k, v in dict(self.unet_config).items() if not k.startswith("_")}


class DiffusionGenerator(torch.nn.Module):
    """A UNet and its noise schedule, sampled like hfgen's other generators and saved as a diffusers pipeline."""

    def __init__(self, unet, scheduler_config: dict, id2label: dict | None = None, sampler: str = "ddim",
                 num_inference_steps: int = 50):
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler {sampler!r} is not one of {sorted(SAMPLERS)}")
        self.unet = unet
        self.scheduler_config = dict(scheduler_config)
        self.sampler, self.num_inference_steps = sampler, num_inference_steps
        self.config = DiffusionConfig(unet.config, id2label)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def make_scheduler(self, sampler: str | None = None):
        """A fresh scheduler of `sampler` (default: this generator's) built from the training schedule."""
        import diffusers

        return getattr(diffusers, SAMPLERS[sampler or self.sampler]).from_config(self.scheduler_config)

    def labels_for(self, num_images: int, labels) -> torch.Tensor | None:
        num_classes = self.config.num_classes
        if labels is None:
            return torch.arange(num_images) % num_classes if num_classes else None
        if not num_classes:
            raise ValueError("the model is unconditional (no num_class_embeds) but labels were given")
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        if labels.numel() != num_images or labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"labels must be {num_images} class ids in [0, {num_classes}), got {labels.tolist()}")
        return labels

    @torch.no_grad()
    def generate(self, num_images: int, seed: int | None = None, labels=None, batch_size: int = 256,
                 num_inference_steps: int | None = None, sampler: str | None = None) -> torch.FloatTensor:
        """`num_images` samples, (num_images, channels, height, width) float32 in [0, 1] on the model's device.

        The initial noise (and a stochastic sampler's noise) comes from a private CPU generator seeded with `seed`
        (fresh entropy when None), drawn for all images up front: a seed gives the same images for any
        `batch_size` and device, and the global RNG is not touched. `labels`: one class id per image for a
        class-conditional model, or None to cycle through the classes."""
        steps = min(num_inference_steps or self.num_inference_steps, self.scheduler_config["num_train_timesteps"])
        labels = self.labels_for(num_images, labels)
        rng = torch.Generator()
        rng.seed() if seed is None else rng.manual_seed(seed)
        c, s = self.config.num_channels, self.config.image_size
        noise = torch.randn(num_images, c, s, s, generator=rng)
        was_training = self.unet.training
        self.unet.eval()
        chunks = []
        try:
            for start in range(0, num_images, batch_size):
                scheduler = self.make_scheduler(sampler)
                scheduler.set_timesteps(steps)
                x = noise[start : start + batch_size].to(self.device, self.unet.dtype) * scheduler.init_noise_sigma
                y = labels[start : start + batch_size].to(self.device) if labels is not None else None
                for t in scheduler.timesteps:
                    out = self.unet(scheduler.scale_model_input(x, t), t, class_labels=y).sample
                    x = scheduler.step(out, t, x, generator=rng).prev_sample
                chunks.append(x.float().add(1).div(2).clamp(0, 1))
        finally:
            self.unet.train(was_training)
        return torch.cat(chunks)

    def save_pretrained(self, save_directory: str | os.PathLike, **_) -> None:
        """Write a diffusers pipeline folder (model_index.json, unet/, scheduler/, and for a class-conditional UNet
        the pipeline's code) that `DiffusionPipeline.from_pretrained` loads."""
        from diffusers import DDPMPipeline, DDPMScheduler

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        scheduler = DDPMScheduler.from_config(self.scheduler_config)
        unet = self.unet.to(torch.float32)
        if self.config.num_classes:
            from .models.ddpm import ClassConditionalDDPMPipeline

            pipeline = ClassConditionalDDPMPipeline(unet=unet, scheduler=scheduler, id2label=self.config.id2label)
        else:
            pipeline = DDPMPipeline(unet=unet, scheduler=scheduler)
        pipeline.save_pretrained(out, safe_serialization=True)
        if self.config.num_classes:  # the custom class, named in model_index.json and shipped beside it
            shutil.copyfile(PIPELINE_FILE, out / PIPELINE_FILE.name)
            index = json.loads((out / "model_index.json").read_text())
            index["_class_name"] = CONDITIONAL_PIPELINE
            (out / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, revision: str | None = None, sampler: str = "ddim",
                        num_inference_steps: int = 50, device: str | torch.device | None = None) -> "DiffusionGenerator":
        """Load a pipeline folder or Hub repo with stock diffusers classes (the UNet and the scheduler's config;
        no pipeline code runs, so `trust_remote_code` is never needed here)."""
        from diffusers import UNet2DModel

        folder = Path(path)
        if not folder.is_dir():  # a Hub repo: its unet and scheduler only (never the pipeline's code), from hub_endpoint()
            from huggingface_hub import snapshot_download

            from .hub import hub_endpoint

            folder = Path(snapshot_download(str(path), revision=revision, endpoint=hub_endpoint(),
                                            allow_patterns=["model_index.json", "unet/*", "scheduler/*"]))
        if not (folder / "model_index.json").is_file():
            raise ValueError(f"{path}: no model_index.json, so not a diffusers pipeline folder")
        index = _read_json(folder / "model_index.json")
        if "unet" not in index or "scheduler" not in index:
            raise ValueError(f"{path}: model_index.json names {sorted(k for k in index if not k.startswith('_'))}; "
                             "hfgen samples pipelines with a unet and a scheduler (DDPMPipeline and its kind)")
        unet = UNet2DModel.from_pretrained(str(folder), subfolder="unet", torch_dtype=torch.float32)
        scheduler_config = _read_json(folder / "scheduler" / "scheduler_config.json")
        generator = cls(unet, scheduler_config, id2label=index.get("id2label"), sampler=sampler,
                        num_inference_steps=num_inference_steps)
        return generator.to(device or "cpu").eval()


def is_pipeline(path: str | os.PathLike, revision: str | None = None) -> bool:
    """True for a diffusers pipeline folder or Hub repo (it has model_index.json)."""
    if Path(path).is_dir():
        return (Path(path) / "model_index.json").is_file()
    if Path(path).exists() or str(path).count("/") != 1:
        return False
    from .hub import hub_api

    try:
        return hub_api().file_exists(str(path), "model_index.json", revision=revision)
    except Exception:  # not a repo id, or the Hub cannot be reached: let the transformers path say why
        return False


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return json.loads(path.read_text())
