"""hfgen's own model families, and the one place where they are registered with the transformers Auto classes.

After `import hfgen.models`, `AutoConfig.from_pretrained(dir)` and `AutoModel.from_pretrained(dir)` load any folder
saved by these models, and `AutoModel.from_config(config)` builds one. `MODEL_CONFIGS` maps each recipe `model.type`
to its config class.
"""

from transformers import AutoConfig, AutoModel

from .dcgan import DCGANConfig, DCGANModel
from .vae import VAEConfig, VAEModel


MODEL_CONFIGS = {
    DCGANConfig.model_type: DCGANConfig,  # "hfgen-dcgan"
    VAEConfig.model_type: VAEConfig,  # "hfgen-vae"
}
"""Registered hfgen model types (the `model.type` of a recipe) -> config class."""

AutoConfig.register("hfgen-dcgan", DCGANConfig)
AutoModel.register(DCGANConfig, DCGANModel)
AutoConfig.register("hfgen-vae", VAEConfig)
AutoModel.register(VAEConfig, VAEModel)

__all__ = ["MODEL_CONFIGS", "DCGANConfig", "DCGANModel", "VAEConfig", "VAEModel"]
