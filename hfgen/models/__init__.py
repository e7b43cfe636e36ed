"""hfgen's own model families, and the one place where they are registered with the transformers Auto classes.

After `import hfgen.models`, `AutoConfig.from_pretrained(dir)` and `AutoModel.from_pretrained(dir)` load any folder
saved by these models, and `AutoModel.from_config(config)` builds one. `MODEL_CONFIGS` maps each recipe `model.type`
to its config class.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForMaskedImageModeling,
    AutoModelForSequenceClassification,
)

from .dcgan import DCGANConfig, DCGANModel
from .image_encoder import (
    ImageAutoencoderModel,
    ImageEncoderConfig,
    ImageEncoderForContrastiveLearning,
    ImageEncoderForImageClassification,
    ImageEncoderImageProcessor,
    ImageEncoderModel,
)
from .rnn_classifier import RNNClassifierConfig, RNNClassifierForSequenceClassification, RNNClassifierModel
from .sentence_encoder import SentenceEncoderConfig, SentenceEncoderModel
from .vae import VAEConfig, VAEModel


MODEL_CONFIGS = {
    DCGANConfig.model_type: DCGANConfig,  # "hfgen-dcgan"
    VAEConfig.model_type: VAEConfig,  # "hfgen-vae"
    ImageEncoderConfig.model_type: ImageEncoderConfig,  # "hfgen-image-encoder"
    SentenceEncoderConfig.model_type: SentenceEncoderConfig,  # "hfgen-sentence-encoder"
    RNNClassifierConfig.model_type: RNNClassifierConfig,  # "hfgen-rnn-classifier"
}
"""Registered hfgen model types (the `model.type` of a recipe) -> config class."""

AutoConfig.register("hfgen-dcgan", DCGANConfig)
AutoModel.register(DCGANConfig, DCGANModel)
AutoConfig.register("hfgen-vae", VAEConfig)
AutoModel.register(VAEConfig, VAEModel)
AutoConfig.register("hfgen-image-encoder", ImageEncoderConfig)
AutoModel.register(ImageEncoderConfig, ImageEncoderModel)
AutoModelForImageClassification.register(ImageEncoderConfig, ImageEncoderForImageClassification)
AutoImageProcessor.register(ImageEncoderConfig, slow_image_processor_class=ImageEncoderImageProcessor)  # PIL only
# The autoencoder reconstructs pixels of (optionally masked) input: transformers' nearest Auto class is masked
# image modeling (SimMIM-style pixel reconstruction).
AutoModelForMaskedImageModeling.register(ImageEncoderConfig, ImageAutoencoderModel)
AutoConfig.register("hfgen-sentence-encoder", SentenceEncoderConfig)
AutoModel.register(SentenceEncoderConfig, SentenceEncoderModel)
AutoConfig.register("hfgen-rnn-classifier", RNNClassifierConfig)
AutoModel.register(RNNClassifierConfig, RNNClassifierModel)
AutoModelForSequenceClassification.register(RNNClassifierConfig, RNNClassifierForSequenceClassification)

__all__ = ["MODEL_CONFIGS", "DCGANConfig", "DCGANModel", "VAEConfig", "VAEModel"]
__all__ += [
    "ImageAutoencoderModel",
    "ImageEncoderConfig",
    "ImageEncoderForContrastiveLearning",
    "ImageEncoderForImageClassification",
    "ImageEncoderImageProcessor",
    "ImageEncoderModel",
]
__all__ += ["SentenceEncoderConfig", "SentenceEncoderModel"]
__all__ += ["RNNClassifierConfig", "RNNClassifierForSequenceClassification", "RNNClassifierModel"]
