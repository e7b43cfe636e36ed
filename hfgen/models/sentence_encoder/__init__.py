from .configuration_sentence_encoder import SentenceEncoderConfig
from .modeling_sentence_encoder import SentenceEncoderModel, SentenceEncoderOutput, SentenceEncoderPreTrainedModel


__all__ = ["SentenceEncoderConfig", "SentenceEncoderModel", "SentenceEncoderOutput", "SentenceEncoderPreTrainedModel"]
