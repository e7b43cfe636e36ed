from .configuration_image_encoder import ImageEncoderConfig
from .image_processing_image_encoder import ImageEncoderImageProcessor
from .modeling_image_encoder import (
    ImageAutoencoderModel,
    ImageAutoencoderOutput,
    ImageEncoderContrastiveOutput,
    ImageEncoderForContrastiveLearning,
    ImageEncoderForImageClassification,
    ImageEncoderModel,
    ImageEncoderPreTrainedModel,
)

__all__ = [
    "ImageAutoencoderModel",
    "ImageAutoencoderOutput",
    "ImageEncoderConfig",
    "ImageEncoderContrastiveOutput",
    "ImageEncoderForContrastiveLearning",
    "ImageEncoderForImageClassification",
    "ImageEncoderImageProcessor",
    "ImageEncoderModel",
    "ImageEncoderPreTrainedModel",
]
