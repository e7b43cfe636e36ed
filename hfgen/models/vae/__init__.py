from .configuration_vae import VAEConfig
from .modeling_vae import VAEDecoder, VAEEncoder, VAEModel, VAEOutput, VAEPreTrainedModel


__all__ = ["VAEConfig", "VAEDecoder", "VAEEncoder", "VAEModel", "VAEOutput", "VAEPreTrainedModel"]
