"""DCGAN (Radford et al., 2015, arXiv:1511.06434) as a `transformers` model, optionally class-conditional.

The generator and discriminator are separate `nn.Module`s kept as `model.generator` and `model.discriminator`, so a
training loop can `accelerator.prepare` each with its own optimizer. The adversarial losses couple the two networks,
so they live in the training method, not here.

This file imports only `torch`, `transformers` and its sibling configuration file (relative import), so a saved
model folder loads with `trust_remote_code=True` where hfgen is not installed.
"""

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_dcgan import DCGANConfig


# Stride-2 layers per image size, and the feature map size the generator starts from (and the discriminator ends at).
_NUM_RESOLUTION_STEPS = {28: 2, 32: 3, 64: 4}
_SMALLEST_SIZE = {28: 7, 32: 4, 64: 4}


@dataclass
class DCGANOutput(ModelOutput):
    """
    Output of [`DCGANModel`].

    Args:
        images (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`, *optional*):
            Generator output in [-1, 1] (tanh), returned when `latents` were given.
        logits (`torch.FloatTensor` of shape `(batch_size,)`, *optional*):
            Discriminator logits (real > 0 > fake, no sigmoid), returned when `pixel_values` were given.
    """

    images: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


def _check_labels(labels, num_classes, batch_size, where):
    if num_classes == 0 and labels is not None:
        raise ValueError(
            f"{where}: the model is unconditional (num_classes=0) but labels were given; pass labels=None, "
            "or train a conditional model by setting num_classes in the config."
        )
    if num_classes > 0 and labels is None:
        raise ValueError(
            f"{where}: the model is class-conditional (num_classes={num_classes}); pass labels, a (batch,) tensor "
            f"of class ids in [0, {num_classes})."
        )
    if labels is not None and tuple(labels.shape) != (batch_size,):
        raise ValueError(f"{where}: labels must have shape ({batch_size},), got {tuple(labels.shape)}.")


class DCGANGenerator(nn.Module):
    """
    Maps latents z (and class labels, for a conditional model) to images in [-1, 1]: a stack of transposed
    convolutions with BatchNorm and ReLU, tanh at the output, as in the DCGAN paper.
    """

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.latent_dim = config.latent_dim
        self.num_classes = config.num_classes
        self.label_embedding = (
            nn.Embedding(config.num_classes, config.label_embedding_dim) if config.num_classes > 0 else None
        )
        input_dim = config.latent_dim + (config.label_embedding_dim if config.num_classes > 0 else 0)

        num_steps = _NUM_RESOLUTION_STEPS[config.image_size]
        width = config.generator_width * 2 ** (num_steps - 1)
        # No biases before BatchNorm: its shift makes them redundant.
        layers = [
            # 1x1 -> smallest size (7x7 for 28x28 images, else 4x4)
            nn.ConvTranspose2d(input_dim, width, _SMALLEST_SIZE[config.image_size], 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        for _ in range(num_steps - 1):  # each doubles the size and halves the width
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2)]
            layers += [nn.ReLU(inplace=True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, config.num_channels, 4, 2, 1), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor, labels: torch.LongTensor | None = None) -> torch.Tensor:
        """`latents` (batch, latent_dim), `labels` (batch,) or None -> images (batch, channels, height, width) in
        [-1, 1]."""
        if latents.dim() != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(
                f"DCGANGenerator: latents must have shape (batch, {self.latent_dim}), got {tuple(latents.shape)}."
            )
        _check_labels(labels, self.num_classes, latents.shape[0], "DCGANGenerator")
        if self.label_embedding is not None:
            latents = torch.cat([latents, self.label_embedding(labels).to(latents.dtype)], dim=1)
        return self.layers(latents[:, :, None, None])  # (batch, input_dim, 1, 1) -> (batch, channels, height, width)


class DCGANDiscriminator(nn.Module):
    """
    Maps images in [-1, 1] (and class labels, for a conditional model) to one real/fake logit per image: strided
    convolutions with LeakyReLU(0.2) and BatchNorm (none on the first layer), then a linear head and, when
    conditional, the projection term <embed(y), h> of Miyato & Koyama (2018). Returns logits, no sigmoid.
    """

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.num_classes = config.num_classes
        self.image_shape = (config.num_channels, config.image_size, config.image_size)

        width = config.discriminator_width
        layers = [nn.Conv2d(config.num_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(_NUM_RESOLUTION_STEPS[config.image_size] - 1):  # each halves the size and doubles the width
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            width *= 2
        self.layers = nn.Sequential(*layers)

        feature_dim = width * _SMALLEST_SIZE[config.image_size] ** 2
        # A linear map of the flattened last feature map is the paper's final valid convolution.
        self.head = nn.Linear(feature_dim, 1)
        self.class_projection = nn.Embedding(config.num_classes, feature_dim) if config.num_classes > 0 else None

    def forward(self, pixel_values: torch.Tensor, labels: torch.LongTensor | None = None) -> torch.Tensor:
        """`pixel_values` (batch, channels, height, width) in [-1, 1], `labels` (batch,) or None -> logits
        (batch,)."""
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != self.image_shape:
            raise ValueError(
                f"DCGANDiscriminator: pixel_values must have shape (batch, {', '.join(map(str, self.image_shape))}),"
                f" got {tuple(pixel_values.shape)}."
            )
        _check_labels(labels, self.num_classes, pixel_values.shape[0], "DCGANDiscriminator")
        features = self.layers(pixel_values).flatten(1)  # (batch, width * size * size)
        logits = self.head(features).squeeze(1)  # (batch,)
        if self.class_projection is not None:
            logits = logits + (self.class_projection(labels).to(features.dtype) * features).sum(dim=1)
        return logits


class DCGANPreTrainedModel(PreTrainedModel):
    config_class = DCGANConfig
    base_model_prefix = "dcgan"
    main_input_name = "latents"
    input_modalities = "image"

    @torch.no_grad()
    def _init_weights(self, module):
        # The paper: "All weights were initialized from a zero-centered Normal distribution with standard
        # deviation 0.02"; BatchNorm scales are drawn around 1 (as in the reference implementation).
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.BatchNorm2d):
            init.normal_(module.weight, mean=1.0, std=0.02)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)


class DCGANModel(DCGANPreTrainedModel):
    """
    A DCGAN: `generator` (latents -> images in [-1, 1]) and `discriminator` (images -> logits), with `generate` for
    seeded sampling of images in [0, 1].
    """

    def __init__(self, config: DCGANConfig):
        super().__init__(config)
        self.generator = DCGANGenerator(config)
        self.discriminator = DCGANDiscriminator(config)
        self.post_init()

    def forward(
        self,
        latents: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DCGANOutput | tuple:
        """
        Runs the generator on `latents` (batch, latent_dim) and/or the discriminator on `pixel_values`
        (batch, channels, height, width) in [-1, 1]; `labels` (batch,) go to both and are required exactly when the
        model is conditional. Returns `DCGANOutput(images, logits)`, each None when its input was not given.
        """
        if latents is None and pixel_values is None:
            raise ValueError(
                "DCGANModel.forward: pass latents (to generate images), pixel_values (to score them), or both."
            )
        images = self.generator(latents, labels) if latents is not None else None
        logits = self.discriminator(pixel_values, labels) if pixel_values is not None else None
        output = DCGANOutput(images=images, logits=logits)
        return output if return_dict else output.to_tuple()

    def sample_latents(
        self, num_images: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Draws `num_images` latents z ~ N(0, I), shape (num_images, latent_dim), in the model's dtype on `device`
        (default: the model's device). They are drawn on `generator`'s device (the global RNG when None)."""
        device = torch.device(device) if device is not None else self.device
        sample_device = generator.device if generator is not None else device
        latents = torch.randn(num_images, self.config.latent_dim, generator=generator, device=sample_device)
        return latents.to(device=device, dtype=self.dtype)

    def generate(
        self,
        num_images: int,
        seed: int | None = None,
        labels: torch.Tensor | list[int] | None = None,
        batch_size: int = 256,
    ) -> torch.FloatTensor:
        """
        Samples `num_images` images, (num_images, channels, height, width) float32 in [0, 1] on the model's device.

        Runs in eval mode (BatchNorm running statistics) without gradients and restores every submodule's train/eval
        mode afterwards. Latents come from a private CPU `torch.Generator` seeded with `seed` (fresh entropy when
        None): a seed gives the same latents on any device and for any `batch_size` (so the same images, up to float
        rounding), and the global RNG is neither used nor advanced. For a conditional model `labels` are class ids,
        one per image (a list or tensor), or None to cycle through classes 0..num_classes-1; an unconditional model
        takes no labels.
        """
        labels = self._generation_labels(num_images, labels)
        rng = torch.Generator()
        if seed is None:
            rng.seed()
        else:
            rng.manual_seed(seed)
        latents = self.sample_latents(num_images, generator=rng)  # (num_images, latent_dim)
        chunks = []
        with _eval_mode(self), torch.no_grad():
            for start in range(0, num_images, batch_size):
                batch_labels = labels[start : start + batch_size] if labels is not None else None
                chunks.append(self.generator(latents[start : start + batch_size], batch_labels).float())
        return torch.cat(chunks).add(1).div(2).clamp(0, 1)  # tanh range [-1, 1] -> [0, 1]

    def _generation_labels(self, num_images, labels):
        num_classes = self.config.num_classes
        if num_classes == 0:
            _check_labels(labels, 0, num_images, "DCGANModel.generate")
            return None
        if labels is None:
            return torch.arange(num_images, device=self.device) % num_classes
        labels = torch.as_tensor(labels)
        if labels.is_floating_point() or labels.dtype == torch.bool or tuple(labels.shape) != (num_images,):
            raise ValueError(
                f"DCGANModel.generate: labels must be {num_images} integer class ids (one per image), "
                f"got dtype {labels.dtype} and shape {tuple(labels.shape)}."
            )
        if (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"DCGANModel.generate: labels must lie in [0, {num_classes}), got min {labels.min().item()} "
                f"and max {labels.max().item()}."
            )
        return labels.to(device=self.device, dtype=torch.long)


@contextmanager
def _eval_mode(model: nn.Module):
    """Puts `model` in eval mode and restores each submodule's own mode on exit (a training loop may hold the
    generator and discriminator in different modes)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


__all__ = ["DCGANDiscriminator", "DCGANGenerator", "DCGANModel", "DCGANOutput", "DCGANPreTrainedModel"]
