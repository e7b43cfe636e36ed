"""Denoising diffusion (DDPM) as diffusers pipelines: stock `UNet2DModel` + scheduler folders, and for
class-conditional UNets the self-contained `ClassConditionalDDPMPipeline` file that such folders carry."""

from .pipeline_hfgen_ddpm import ClassConditionalDDPMPipeline

__all__ = ["ClassConditionalDDPMPipeline"]
