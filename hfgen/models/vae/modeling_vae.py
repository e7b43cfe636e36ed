"""Convolutional VAE (Kingma & Welling, 2014, arXiv:1312.6114) with the beta-VAE KL weight (Higgins et al., 2017)
as a `transformers` model.

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
from transformers.utils import ModelOutput

from .configuration_vae import VAEConfig


@dataclass
class VAEOutput(ModelOutput):
    """
    Output of [`VAEModel`]. Loss terms are per image, in nats, computed in float32, and averaged over the
    batch (shape `()`), or one per image (shape `(batch_size,)`) with `reduction="none"`.

    Args:
        loss (`torch.FloatTensor` of shape `()`):
            `reconstruction_loss + beta * kl_weight * kl`; with beta = kl_weight = 1 the negative ELBO.
        reconstruction_loss (`torch.FloatTensor` of shape `()`):
            -log p(x|z), summed over pixels, for z sampled from the posterior (or its mean when `sample=False`).
        kl (`torch.FloatTensor` of shape `()`):
            KL(q(z|x) || N(0, I)) in closed form.
        reconstructions (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`):
            Mean of p(x|z), in [0, 1].
        latent_mean (`torch.FloatTensor` of shape `(batch_size, latent_dim)`):
            Mean of the posterior q(z|x).
        latent_logvar (`torch.FloatTensor` of shape `(batch_size, latent_dim)`):
            Log-variance of the posterior q(z|x).
    """

    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    kl: torch.FloatTensor | None = None
    reconstructions: torch.FloatTensor | None = None
    latent_mean: torch.FloatTensor | None = None
    latent_logvar: torch.FloatTensor | None = None


def _label_embedding(config: VAEConfig) -> nn.Embedding | None:
    return nn.Embedding(config.num_classes, config.label_embedding_dim) if config.num_classes > 0 else None


def _with_labels(features: torch.Tensor, embedding: nn.Embedding | None, labels, where: str) -> torch.Tensor:
    """`features` (batch, d) with the label embedding appended for a conditional model; checks `labels`."""
    if embedding is None:
        if labels is not None:
            raise ValueError(f"{where}: the model is unconditional (num_classes=0) but labels were given; pass labels=None.")
        return features
    if labels is None:
        raise ValueError(f"{where}: the model is class-conditional (num_classes={embedding.num_embeddings}); pass labels, "
                         f"a (batch,) tensor of class ids in [0, {embedding.num_embeddings}).")
    if tuple(labels.shape) != (features.shape[0],):
        raise ValueError(f"{where}: labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}.")
    return torch.cat([features, embedding(labels.to(features.device)).to(features.dtype)], dim=1)


class VAEEncoder(nn.Module):
    """Images (and, for a conditional model, labels) -> mean and log-variance of the diagonal Gaussian posterior
    q(z|x[, y]): stride-2 convs, then linear (over the conv features and the label embedding)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        layers, in_channels = [], config.num_channels
        for width in config.hidden_widths:  # each halves the height and width
            layers += [nn.Conv2d(in_channels, width, 4, 2, 1), nn.ReLU(inplace=True)]
            in_channels = width
        self.layers = nn.Sequential(*layers)
        final_size = config.image_size // 2 ** len(config.hidden_widths)
        self.label_embedding = _label_embedding(config)
        labels_dim = config.label_embedding_dim if config.num_classes > 0 else 0
        self.latent_head = nn.Linear(in_channels * final_size**2 + labels_dim, 2 * config.latent_dim)

    def forward(self, pixel_values: torch.Tensor, labels: torch.LongTensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.layers(pixel_values).flatten(1)  # (batch, width * size * size)
        features = _with_labels(features, self.label_embedding, labels, "VAEEncoder")
        mean, logvar = self.latent_head(features).chunk(2, dim=1)  # each (batch, latent_dim)
        # Bounds exp(logvar) so it can neither overflow nor vanish in low precision (as diffusers' VAEs do).
        return mean, logvar.clamp(-30.0, 20.0)


class VAEDecoder(nn.Module):
    """Latents (and, for a conditional model, labels) -> per-pixel logits of p(x|z[, y]) (Bernoulli logits, or
    Gaussian means before the sigmoid): linear, then stride-2 transposed convs mirroring the encoder."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        widths = config.hidden_widths
        final_size = config.image_size // 2 ** len(widths)
        self.start_shape = (widths[-1], final_size, final_size)
        self.label_embedding = _label_embedding(config)
        labels_dim = config.label_embedding_dim if config.num_classes > 0 else 0
        self.latent_projection = nn.Linear(config.latent_dim + labels_dim, math.prod(self.start_shape))
        layers = []
        for in_width, out_width in zip(widths[::-1], widths[-2::-1]):  # each doubles the height and width
            layers += [nn.ConvTranspose2d(in_width, out_width, 4, 2, 1), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[0], config.num_channels, 4, 2, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor, labels: torch.LongTensor | None = None) -> torch.Tensor:
        hidden = F.relu(self.latent_projection(_with_labels(latents, self.label_embedding, labels, "VAEDecoder")))
        hidden = hidden.view(-1, *self.start_shape)  # (batch, channels, height, width)
        return self.layers(hidden)  # (batch, num_channels, image_size, image_size)


class VAEPreTrainedModel(PreTrainedModel):
    config_class = VAEConfig
    base_model_prefix = "vae"
    main_input_name = "pixel_values"
    input_modalities = "image"

    @torch.no_grad()
    def _init_weights(self, module):
        # PyTorch's default init (kaiming-uniform, scaled by 1/sqrt(fan_in)) keeps activations at a similar scale
        # through the network. transformers' default, a fixed N(0, 0.02), is 7x too small for the first conv
        # (fan_in 16) and so shrinks the signal, which slows early VAE training. `reset_parameters` goes through
        # torch.nn.init, which transformers guards, so weights loaded by from_pretrained are not re-initialized.
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            module.reset_parameters()


class VAEModel(VAEPreTrainedModel):
    """
    A VAE on images in [0, 1]: `forward` returns the (beta-weighted) negative ELBO, `encode` / `decode` /
    `reconstruct` map between images and latents, `generate` decodes prior samples.
    """

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.encoder = VAEEncoder(config)
        self.decoder = VAEDecoder(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.LongTensor | None = None,
        kl_weight: float = 1.0,
        sample: bool = True,
        generator: torch.Generator | None = None,
        reduction: str = "mean",
        return_dict: bool = True,
    ) -> VAEOutput | tuple:
        """
        Args:
            pixel_values: (batch, num_channels, image_size, image_size) floats in [0, 1].
            labels: (batch,) class ids, required exactly when the model is conditional (`num_classes` > 0).
            kl_weight: KL warm-up factor from the training loop; the KL term is weighted by `beta * kl_weight`.
            sample: draw z from q(z|x) with the reparameterization trick; False uses the posterior mean.
            generator: RNG for that draw (the global RNG when None); noise is drawn on its device.
            reduction: "mean" averages the per-image terms over the batch; "none" returns them per
                image, shape (batch,), so an evaluation can gather them across processes exactly.
        """
        if reduction not in ("mean", "none"):
            raise ValueError(f"VAEModel: reduction must be 'mean' or 'none', got {reduction!r}")
        self._check_pixel_values(pixel_values)
        mean, logvar = self.encoder(pixel_values, labels)
        latents = mean
        if sample:
            noise_device = generator.device if generator is not None else mean.device
            noise = torch.randn(mean.shape, generator=generator, device=noise_device).to(mean.device, mean.dtype)
            latents = mean + torch.exp(0.5 * logvar) * noise
        decoder_output = self.decoder(latents, labels)

        # Sums over hundreds of pixels lose too much in bf16/fp16, so the loss is always computed in float32.
        with torch.autocast(device_type=pixel_values.device.type, enabled=False):
            reconstruction_loss = self._negative_log_likelihood(decoder_output.float(), pixel_values.float())
            kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1.0 - logvar.float()).sum(dim=1)  # (batch,)
            loss = reconstruction_loss + self.config.beta * kl_weight * kl
            if reduction == "mean":
                loss, reconstruction_loss, kl = loss.mean(), reconstruction_loss.mean(), kl.mean()

        output = VAEOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            kl=kl,
            reconstructions=torch.sigmoid(decoder_output),
            latent_mean=mean,
            latent_logvar=logvar,
        )
        return output if return_dict else output.to_tuple()

    def _negative_log_likelihood(self, decoder_output, pixel_values):
        """-log p(x|z) per image, summed over pixels: shape (batch,)."""
        if self.config.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(decoder_output, pixel_values, reduction="none")
        else:
            sigma = self.config.gaussian_std
            residual = (pixel_values - torch.sigmoid(decoder_output)) / sigma
            nll = 0.5 * residual**2 + 0.5 * math.log(2 * math.pi * sigma**2)
        return nll.flatten(1).sum(dim=1)

    def _check_pixel_values(self, pixel_values):
        expected = (self.config.num_channels, self.config.image_size, self.config.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"VAEModel: pixel_values must have shape (batch, {', '.join(map(str, expected))}), "
                f"got {tuple(pixel_values.shape)}."
            )
        low, high = torch.aminmax(pixel_values.detach())
        if low < 0 or high > 1:
            raise ValueError(
                f"VAEModel: pixel_values must lie in [0, 1] (got min {low.item():.3g}, max {high.item():.3g}); "
                "the likelihood reads pixels on that scale, so do not normalize them to [-1, 1]."
            )

    def encode(self, pixel_values: torch.Tensor, labels: torch.LongTensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (batch, channels, height, width) in [0, 1] (and their labels, for a conditional model) ->
        posterior `(mean, logvar)`, each (batch, latent_dim)."""
        return self.encoder(pixel_values, labels)

    def decode(self, latents: torch.Tensor, labels: torch.LongTensor | None = None) -> torch.Tensor:
        """Latents (batch, latent_dim) (and labels, for a conditional model) -> mean images of p(x|z), (batch,
        channels, height, width) in [0, 1]."""
        return torch.sigmoid(self.decoder(latents, labels))

    @torch.no_grad()
    def reconstruct(self, pixel_values: torch.Tensor, labels: torch.LongTensor | None = None) -> torch.FloatTensor:
        """Images in [0, 1] -> their reconstructions from the posterior mean (no sampling), float32 in [0, 1]."""
        with _eval_mode(self):
            mean, _ = self.encode(pixel_values, labels)
            return self.decode(mean, labels).float()

    def generation_labels(self, num_images: int, labels=None) -> torch.LongTensor | None:
        """Class ids for `generate`: `labels` (list or tensor, one per image) checked, or for a conditional model
        classes 0..num_classes-1 in turn when None."""
        num_classes = self.config.num_classes
        if labels is None:
            return torch.arange(num_images) % num_classes if num_classes else None
        if not num_classes:
            raise ValueError("VAEModel.generate: the model is unconditional (num_classes=0) but labels were given.")
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        if labels.numel() != num_images or labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"VAEModel.generate: labels must be {num_images} class ids in [0, {num_classes}).")
        return labels

    def generate(self, num_images: int, seed: int | None = None, labels=None, batch_size: int = 256) -> torch.FloatTensor:
        """
        Decodes `num_images` latents drawn from the prior N(0, I): (num_images, channels, height, width) float32 in
        [0, 1] on the model's device, in eval mode without gradients (each submodule's mode is restored after).
        Latents come from a private CPU `torch.Generator` seeded with `seed` (fresh entropy when None): a seed gives
        the same latents on any device and for any `batch_size` (so the same images, up to float rounding), and the
        global RNG is left untouched. A conditional model takes `labels`, one class id per image (None: each class
        in turn).
        """
        labels = self.generation_labels(num_images, labels)
        rng = torch.Generator()
        if seed is None:
            rng.seed()
        else:
            rng.manual_seed(seed)
        latents = torch.randn(num_images, self.config.latent_dim, generator=rng)  # (num_images, latent_dim)
        latents = latents.to(device=self.device, dtype=self.dtype)
        chunks = []
        with _eval_mode(self), torch.no_grad():
            for start in range(0, num_images, batch_size):
                batch_labels = labels[start : start + batch_size].to(self.device) if labels is not None else None
                chunks.append(self.decode(latents[start : start + batch_size], batch_labels).float())
        return torch.cat(chunks)


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


__all__ = ["VAEDecoder", "VAEEncoder", "VAEModel", "VAEOutput", "VAEPreTrainedModel"]
