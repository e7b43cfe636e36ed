from .configuration_dcgan import DCGANConfig
from .modeling_dcgan import DCGANDiscriminator, DCGANGenerator, DCGANModel, DCGANOutput, DCGANPreTrainedModel


__all__ = ["DCGANConfig", "DCGANDiscriminator", "DCGANGenerator", "DCGANModel", "DCGANOutput", "DCGANPreTrainedModel"]
