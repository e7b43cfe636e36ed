"""A class-conditional DDPM pipeline for diffusers: `UNet2DModel` with `num_class_embeds` plus any diffusers scheduler.

diffusers ships `DDPMPipeline` for unconditional UNets but no pipeline that passes class labels to a `UNet2DModel`,
so a class-conditional folder written by hfgen carries this file beside `model_index.json`. It imports only torch and
diffusers (never hfgen), so

    >>> from diffusers import DiffusionPipeline
    >>> pipe = DiffusionPipeline.from_pretrained("path/or/repo", trust_remote_code=True)
    >>> images = pipe(class_labels=["Sneaker", 0, 7], num_inference_steps=50).images

loads and samples where hfgen is not installed. The weights and the scheduler are stock diffusers components:
`UNet2DModel.from_pretrained(path, subfolder="unet")` and `DDPMScheduler.from_pretrained(path, subfolder="scheduler")`
load them without any custom code.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor


class ClassConditionalDDPMPipeline(DiffusionPipeline):
    r"""
    Samples images of given classes from a class-conditional `UNet2DModel` (Ho et al. 2020, with a class embedding
    added to the timestep embedding).

    Args:
        unet ([`UNet2DModel`]): the denoiser, built with `num_class_embeds`.
        scheduler ([`SchedulerMixin`]): e.g. `DDPMScheduler` (as trained) or `DDIMScheduler.from_config(...)`
            for fewer steps.
        id2label (`dict`, *optional*): class names by id; `class_labels` may then be names.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet, scheduler, id2label: dict | None = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        id2label = {int(k): str(v) for k, v in (id2label or {}).items()}
        self.register_to_config(id2label=id2label)
        self.label2id = {name.lower(): i for i, name in id2label.items()}

    def class_ids(self, class_labels) -> torch.LongTensor:
        """Class ids from ids or names (`id2label`), checked against the UNet's number of classes."""
        num_classes = self.unet.config.num_class_embeds
        if not num_classes:
            raise ValueError("this UNet is unconditional (num_class_embeds is not set): use DDPMPipeline")
        if isinstance(class_labels, (int, str)):
            class_labels = [class_labels]
        ids = []
        for label in list(class_labels):
            if isinstance(label, str) and not label.isdigit():
                if label.lower() not in self.label2id:
                    raise ValueError(f"class_labels: unknown class name {label!r}; known: {sorted(self.label2id)}")
                ids.append(self.label2id[label.lower()])
            else:
                ids.append(int(label))
        if any(i < 0 or i >= num_classes for i in ids):
            raise ValueError(f"class_labels: ids must lie in [0, {num_classes}), got {ids}")
        return torch.tensor(ids, dtype=torch.long)

    @torch.no_grad()
    def __call__(
        self,
        class_labels,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int = 1000,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """
        Args:
            class_labels: one class (id or name) per image to generate.
            generator: a `torch.Generator` for reproducible sampling.
            num_inference_steps: denoising steps (1000 for the DDPM scheduler as trained; ~50 with DDIM).
            output_type: `"pil"`, `"np"` (floats in [0, 1], channels last) or `"pt"` (tensor, channels first, [0, 1]).
        """
        labels = self.class_ids(class_labels).to(self.device)
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        shape = (len(labels), self.unet.config.in_channels, *size)
        image = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_output = self.unet(image, t, class_labels=labels).sample
            image = self.scheduler.step(model_output, t, image, generator=generator).prev_sample
        image = (image / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            output = image.float().cpu()
        else:
            output = image.float().cpu().permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                output = self.numpy_to_pil(output)
        if not return_dict:
            return (output,)
        return ImagePipelineOutput(images=output)
