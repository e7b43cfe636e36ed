"""A small ResNet-style image encoder (He et al. 2016, CIFAR variant) and the heads built on it: image
classification, a SimCLR projection head (Chen et al. 2020) and a convolutional (sparse / denoising) autoencoder.

This file imports only `torch`, `transformers` and its sibling configuration file (relative import), so a saved
model folder loads with `trust_remote_code=True` where hfgen is not installed.
"""

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutput,
)
from transformers.utils import ModelOutput

from .configuration_image_encoder import ImageEncoderConfig


@dataclass
class ImageEncoderContrastiveOutput(ModelOutput):
    """
    Output of [`ImageEncoderForContrastiveLearning`].

    Args:
        embeddings (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
            Projection-head outputs, not normalized; the contrastive loss normalizes them.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            The encoder's pooled features (what a downstream classifier sees).
    """

    embeddings: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None


@dataclass
class ImageAutoencoderOutput(ModelOutput):
    """
    Output of [`ImageAutoencoderModel`]. Loss terms are computed in float32.

    Args:
        loss (`torch.FloatTensor` of shape `()` (or `(batch_size,)` with `reduction="none"`)):
            `reconstruction_loss + sparsity_weight * sparsity_loss`.
        reconstruction_loss (`torch.FloatTensor`, same shape as `loss`):
            Per-pixel BCE or MSE against the clean image, averaged over pixels (and over the batch).
        sparsity_loss (`torch.FloatTensor` of shape `()`):
            sum_j KL(rho || rho_hat_j) with rho_hat_j the batch-mean activation of code unit j (Ng 2011).
        reconstructions (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`):
            Reconstructed images in [0, 1].
        code (`torch.FloatTensor` of shape `(batch_size, code_size)`):
            Sigmoid bottleneck activations.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            The encoder's pooled features.
    """

    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    sparsity_loss: torch.FloatTensor | None = None
    reconstructions: torch.FloatTensor | None = None
    code: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None


class ImageEncoderBasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers with an identity (or strided 1x1 conv) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(hidden)
        hidden = F.relu(self.norm1(self.conv1(hidden)))
        return F.relu(self.norm2(self.conv2(hidden)) + residual)


class ImageEncoderPreTrainedModel(PreTrainedModel):
    config_class = ImageEncoderConfig
    base_model_prefix = "image_encoder"
    main_input_name = "pixel_values"
    input_modalities = "image"
    # the autoencoder's decoder and the SimCLR projection head, left behind when their encoder is loaded elsewhere
    _keys_to_ignore_on_load_unexpected = [r"^decoder\.", r"^to_code\.", r"^projection\."]  # noqa: RUF012

    @torch.no_grad()
    def _init_weights(self, module):
        # He init for convs (the ResNet recipe), PyTorch's default for linear layers, BatchNorm at identity. (Zero-
        # initialising each block's last BatchNorm, Goyal et al. 2017, trained these shallow 1-2 block stages ~2x
        # slower on Fashion-MNIST.) The `init` functions leave weights loaded by from_pretrained alone.
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight.shape[1])
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)

    def _check_pixel_values(self, pixel_values: torch.Tensor, exact_size: bool = False) -> None:
        config = self.config
        if pixel_values.dim() != 4 or pixel_values.shape[1] != config.num_channels:
            kind = {1: "grayscale", 3: "RGB"}[config.num_channels]
            raise ValueError(
                f"{type(self).__name__}: pixel_values must have shape (batch, {config.num_channels}, height, width) "
                f"({kind} images, config.num_channels={config.num_channels}), got {tuple(pixel_values.shape)}."
            )
        if exact_size and tuple(pixel_values.shape[2:]) != (config.image_size, config.image_size):
            raise ValueError(
                f"{type(self).__name__}: pixel_values must be {config.image_size}x{config.image_size} "
                f"(config.image_size), got {tuple(pixel_values.shape[2:])}."
            )
        low, high = torch.aminmax(pixel_values.detach())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"{type(self).__name__}: pixel_values must lie in [0, 1] (got min {low.item():.3g}, max "
                f"{high.item():.3g}); divide uint8 images by 255 (the model normalizes them itself)."
            )


class ImageEncoderModel(ImageEncoderPreTrainedModel):
    """
    The bare encoder: images in [0, 1] -> a feature map per stage and one pooled feature vector per image
    (global average pooling of the last stage), `pooler_output` of shape `(batch_size, hidden_sizes[-1])`.
    """

    def __init__(self, config: ImageEncoderConfig):
        super().__init__(config)
        widths, depths = config.hidden_sizes, config.depths
        self.stem = nn.Sequential(
            nn.Conv2d(config.num_channels, widths[0], 3, config.stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        stages, in_channels = [], widths[0]
        for index, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for block in range(depth):  # the first block of every stage but the first halves height and width
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(ImageEncoderBasicBlock(in_channels, width, stride))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPoolingAndNoAttention | tuple:
        """
        Args:
            pixel_values: (batch, num_channels, height, width) floats in [0, 1].
            output_hidden_states: also return the stem's and every stage's feature maps.
        """
        output_hidden_states = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self._check_pixel_values(pixel_values)
        hidden = pixel_values * 2.0 - 1.0 if self.config.normalize_inputs else pixel_values
        hidden = self.stem(hidden)  # (batch, hidden_sizes[0], height, width)
        all_hidden = (hidden,) if output_hidden_states else None
        for stage in self.stages:
            hidden = stage(hidden)  # (batch, width, height / 2**stage, width / 2**stage)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden,)
        pooled = hidden.mean(dim=(2, 3))  # (batch, hidden_sizes[-1])
        if not return_dict:
            return tuple(v for v in (hidden, pooled, all_hidden) if v is not None)
        return BaseModelOutputWithPoolingAndNoAttention(last_hidden_state=hidden, pooler_output=pooled, hidden_states=all_hidden)


class ImageEncoderForImageClassification(ImageEncoderPreTrainedModel):
    """
    The encoder with a linear or MLP head on its pooled features. Given `labels`, computes the loss
    (cross-entropy; MSE for `num_labels == 1`; BCE for `problem_type="multi_label_classification"`).
    """

    def __init__(self, config: ImageEncoderConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.image_encoder = ImageEncoderModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        if config.classifier_head == "linear":
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        else:
            hidden = config.classifier_hidden_size or config.hidden_size
            self.classifier = nn.Sequential(
                nn.Linear(config.hidden_size, hidden),
                nn.ReLU(),
                nn.Dropout(config.classifier_dropout),
                nn.Linear(hidden, config.num_labels),
            )
        self.encoder_frozen = False
        self.post_init()

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Train the head only (a linear probe when `classifier_head="linear"`): the encoder's weights get no
        gradients and it stays in eval mode, so its BatchNorm statistics do not move either."""
        self.encoder_frozen = frozen
        self.image_encoder.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.encoder_frozen:
            self.image_encoder.eval()
        return self

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        """
        Args:
            pixel_values: (batch, num_channels, height, width) floats in [0, 1].
            labels: (batch,) class ids (or (batch, num_labels) targets for multi-label / regression).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.image_encoder(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (batch, num_labels)
        loss = None
        if labels is not None:
            loss = self._loss(logits, labels)
        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.to(logits.device)
        problem_type = self.config.problem_type
        if problem_type is None:
            if self.num_labels == 1:
                problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem_type = "single_label_classification"
            else:
                problem_type = "multi_label_classification"
        with torch.autocast(device_type=logits.device.type, enabled=False):  # losses in float32 under bf16
            logits = logits.float()
            if problem_type == "regression":
                return F.mse_loss(logits.squeeze(-1), labels.float().view(-1)) if self.num_labels == 1 else F.mse_loss(logits, labels.float())
            if problem_type == "single_label_classification":
                return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
            return F.binary_cross_entropy_with_logits(logits, labels.float())


class ImageEncoderForContrastiveLearning(ImageEncoderPreTrainedModel):
    """
    The encoder with SimCLR's projection head (linear, BatchNorm, ReLU, linear; Chen et al. 2020, 2020b). The loss
    is computed on the projections; the head is dropped after pretraining (save `model.image_encoder`), since the
    features before it transfer better.
    """

    def __init__(self, config: ImageEncoderConfig):
        super().__init__(config)
        hidden = config.projection_hidden_size or config.hidden_size
        self.image_encoder = ImageEncoderModel(config)
        self.projection = nn.Sequential(
            nn.Linear(config.hidden_size, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, config.projection_dim),
        )
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> ImageEncoderContrastiveOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        pooled = self.image_encoder(pixel_values, return_dict=True).pooler_output  # (batch, hidden_size)
        embeddings = self.projection(pooled)  # (batch, projection_dim)
        if not return_dict:
            return (embeddings, pooled)
        return ImageEncoderContrastiveOutput(embeddings=embeddings, pooler_output=pooled)


class ImageAutoencoderDecoder(nn.Module):
    """Code -> image logits: a linear layer to the encoder's last feature-map shape, then stride-2 transposed convs
    mirroring the encoder's stages, then a 3x3 conv to the image channels."""

    def __init__(self, config: ImageEncoderConfig):
        super().__init__()
        widths = config.hidden_sizes
        self.start_shape = (widths[-1], config.feature_map_size, config.feature_map_size)
        self.image_size = config.image_size
        self.projection = nn.Linear(config.code_size or config.hidden_size, math.prod(self.start_shape))
        layers = []
        for in_width, out_width in zip(widths[::-1], widths[-2::-1]):  # each doubles height and width
            layers += [nn.ConvTranspose2d(in_width, out_width, 4, 2, 1, bias=False), nn.BatchNorm2d(out_width), nn.ReLU()]
        if config.stem_stride == 2:  # mirrors the strided stem
            layers += [nn.ConvTranspose2d(widths[0], widths[0], 4, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
        layers += [nn.Conv2d(widths[0], config.num_channels, 3, 1, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.projection(code)).view(-1, *self.start_shape)  # (batch, channels, height, width)
        logits = self.layers(hidden)
        extra = logits.shape[-1] - self.image_size  # odd sizes round up on the way down (7 -> 4 -> 8): crop back
        if extra:
            start = extra // 2
            logits = logits[:, :, start : start + self.image_size, start : start + self.image_size]
        return logits  # (batch, num_channels, image_size, image_size)


class ImageAutoencoderModel(ImageEncoderPreTrainedModel):
    """
    The encoder, a sigmoid bottleneck code and a convolutional decoder, trained to reconstruct its input. Options
    (config): a KL sparsity penalty on the code (sparse autoencoder) and input corruption while training (denoising
    autoencoder: gaussian noise or masked patches). `from_pretrained` of its folder into
    [`ImageEncoderForImageClassification`] or [`ImageEncoderModel`] keeps the encoder weights (prefix
    `image_encoder.`) and drops the decoder.
    """

    def __init__(self, config: ImageEncoderConfig):
        super().__init__(config)
        self.image_encoder = ImageEncoderModel(config)
        self.to_code = nn.Linear(config.hidden_size, config.code_size or config.hidden_size)
        self.decoder = ImageAutoencoderDecoder(config)
        self.post_init()

    def corrupt(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The denoising corruption of `config.denoising` (noise drawn from `generator` on its device)."""
        config = self.config
        device = generator.device if generator is not None else pixel_values.device
        if config.denoising == "gaussian":
            noise = torch.randn(pixel_values.shape, generator=generator, device=device).to(pixel_values)
            return (pixel_values + config.noise_std * noise).clamp(0.0, 1.0)
        if config.denoising == "mask":
            batch, _, height, width = pixel_values.shape
            patch = config.mask_patch_size
            grid = (batch, 1, math.ceil(height / patch), math.ceil(width / patch))
            keep = (torch.rand(grid, generator=generator, device=device) >= config.mask_ratio).to(pixel_values)
            keep = keep.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :height, :width]  # (batch, 1, H, W)
            return pixel_values * keep
        return pixel_values

    def forward(
        self,
        pixel_values: torch.Tensor,
        corrupt: bool | None = None,
        generator: torch.Generator | None = None,
        reduction: str = "mean",
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageAutoencoderOutput | tuple:
        """
        Args:
            pixel_values: (batch, num_channels, image_size, image_size) clean images in [0, 1]; the target.
            corrupt: apply `config.denoising` to the input; default: while training only.
            generator: RNG for the corruption (the global RNG when None).
            reduction: "mean" over the batch, or "none" for a per-image reconstruction loss.
        """
        if reduction not in ("mean", "none"):
            raise ValueError(f"ImageAutoencoderModel: reduction must be 'mean' or 'none', got {reduction!r}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self._check_pixel_values(pixel_values, exact_size=True)
        corrupt = self.training if corrupt is None else corrupt
        inputs = self.corrupt(pixel_values, generator) if corrupt else pixel_values
        pooled = self.image_encoder(inputs, return_dict=True).pooler_output  # (batch, hidden_size)
        code = torch.sigmoid(self.to_code(pooled))  # (batch, code_size)
        logits = self.decoder(code)  # (batch, num_channels, image_size, image_size)
        with torch.autocast(device_type=pixel_values.device.type, enabled=False):  # losses in float32 under bf16
            target, logits32 = pixel_values.float(), logits.float()
            if self.config.reconstruction_loss == "bce":
                per_pixel = F.binary_cross_entropy_with_logits(logits32, target, reduction="none")
            else:
                per_pixel = (torch.sigmoid(logits32) - target) ** 2
            reconstruction_loss = per_pixel.flatten(1).mean(dim=1)  # (batch,)
            sparsity_loss = sparsity_kl(code.float(), self.config.sparsity_target)
            loss = reconstruction_loss + self.config.sparsity_weight * sparsity_loss
            if reduction == "mean":
                loss, reconstruction_loss = loss.mean(), reconstruction_loss.mean()
        output = ImageAutoencoderOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            sparsity_loss=sparsity_loss,
            reconstructions=torch.sigmoid(logits),
            code=code,
            pooler_output=pooled,
        )
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def reconstruct(self, pixel_values: torch.Tensor) -> torch.FloatTensor:
        """Clean images in [0, 1] -> reconstructions in [0, 1] (float32, eval mode, no corruption)."""
        with _eval_mode(self):
            return self(pixel_values, corrupt=False).reconstructions.float()


def sparsity_kl(code: torch.Tensor, target: float) -> torch.Tensor:
    """sum_j KL(Bernoulli(target) || Bernoulli(rho_hat_j)), rho_hat_j the batch-mean of code unit j (in (0, 1))."""
    rho_hat = code.mean(dim=0).clamp(1e-6, 1 - 1e-6)  # (code_size,)
    rho = target
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


@contextmanager
def _eval_mode(model: nn.Module):
    """Puts `model` in eval mode and restores each submodule's own mode on exit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


__all__ = [
    "ImageAutoencoderModel",
    "ImageAutoencoderOutput",
    "ImageEncoderContrastiveOutput",
    "ImageEncoderForContrastiveLearning",
    "ImageEncoderForImageClassification",
    "ImageEncoderModel",
    "ImageEncoderPreTrainedModel",
]
