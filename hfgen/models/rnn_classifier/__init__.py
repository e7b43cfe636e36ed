from .configuration_rnn_classifier import RNNClassifierConfig
from .modeling_rnn_classifier import RNNClassifierForSequenceClassification, RNNClassifierModel, RNNClassifierPreTrainedModel


__all__ = ["RNNClassifierConfig", "RNNClassifierForSequenceClassification", "RNNClassifierModel", "RNNClassifierPreTrainedModel"]
