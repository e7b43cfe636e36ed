"""VAE configuration.

This file is self-contained (it imports only from `transformers`) so that a saved model folder loads with
`trust_remote_code=True` where hfgen is not installed.
"""

from dataclasses import field

from transformers import PreTrainedConfig


class VAEConfig(PreTrainedConfig):
    r"""
    Configuration of a [`VAEModel`]: a convolutional variational autoencoder (Kingma & Welling, 2014,
    arXiv:1312.6114) with a diagonal Gaussian posterior, a standard normal prior and an optional beta weight on the
    KL term (beta-VAE, Higgins et al., 2017).

    Args:
        image_size (`int`, *optional*, defaults to 28):
            Height and width of the square images: 28, 32 or 64. Must be divisible by `2 ** len(hidden_widths)`,
            since every conv layer halves it (so 28x28 allows at most two layers).
        num_channels (`int`, *optional*, defaults to 1):
            Image channels: 1 (grayscale) or 3 (RGB).
        latent_dim (`int`, *optional*, defaults to 16):
            Dimension of the latent z.
        hidden_widths (`list[int]`, *optional*, defaults to `[32, 64]`):
            Channels of the encoder's stride-2 conv layers, first to last; the decoder mirrors them in reverse.
        likelihood (`str`, *optional*, defaults to `"bernoulli"`):
            Observation model p(x|z): `"bernoulli"` (pixels in [0, 1] read as probabilities; the usual choice for
            (Fashion-)MNIST) or `"gaussian"` (independent normals with mean sigmoid(decoder output) and fixed
            standard deviation `gaussian_std`).
        gaussian_std (`float`, *optional*, defaults to 0.1):
            Fixed observation noise sigma of the Gaussian likelihood, in pixel units of [0, 1]. Smaller values weigh
            reconstruction more against the KL term. Unused with `likelihood="bernoulli"`.
        beta (`float`, *optional*, defaults to 1.0):
            Weight of the KL term in the loss; 1.0 gives the negative ELBO, > 1 the beta-VAE objective.
        num_classes (`int`, *optional*, defaults to 0):
            0 for an unconditional VAE; otherwise a conditional VAE (Sohn et al. 2015) over this many classes: a
            learned label embedding goes into the encoder (beside the conv features) and into the decoder (beside z),
            so q(z|x, y) and p(x|z, y), and `generate` draws images of the classes asked for.
        label_embedding_dim (`int`, *optional*, defaults to 16):
            Size of each of the two label embeddings of a conditional VAE (unused when `num_classes` is 0).

    Example:

    ```python
    >>> from hfgen.models import VAEConfig, VAEModel
    >>> model = VAEModel(VAEConfig(latent_dim=8))
    >>> images = model.generate(16, seed=0)  # (16, 1, 28, 28) in [0, 1]
    ```
    """

    model_type = "hfgen-vae"

    image_size: int = 28
    num_channels: int = 1
    latent_dim: int = 16
    hidden_widths: list[int] = field(default_factory=lambda: [32, 64])
    likelihood: str = "bernoulli"
    gaussian_std: float = 0.1
    beta: float = 1.0
    num_classes: int = 0
    label_embedding_dim: int = 16

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _check_int(self, "image_size", allowed=(28, 32, 64))
        _check_int(self, "num_channels", allowed=(1, 3))
        _check_int(self, "latent_dim", minimum=1)
        _check_int(self, "num_classes", minimum=0)
        _check_int(self, "label_embedding_dim", minimum=1)
        widths = self.hidden_widths
        if (
            not isinstance(widths, (list, tuple))
            or not widths
            or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)
        ):
            raise ValueError(f"VAEConfig: hidden_widths={widths!r} must be a non-empty list of positive integers.")
        self.hidden_widths = list(widths)
        if self.image_size % 2 ** len(widths):
            raise ValueError(
                f"VAEConfig: hidden_widths has {len(widths)} layers, each halving the image, but image_size="
                f"{self.image_size} is not divisible by 2**{len(widths)}; use at most "
                f"{_max_layers(self.image_size)} hidden_widths for this image_size."
            )
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(
                f"VAEConfig: likelihood={self.likelihood!r} is not supported; use 'bernoulli' or 'gaussian'."
            )
        if not _is_number(self.gaussian_std) or self.gaussian_std <= 0:
            raise ValueError(f"VAEConfig: gaussian_std={self.gaussian_std!r} must be a number > 0.")
        if not _is_number(self.beta) or self.beta < 0:
            raise ValueError(f"VAEConfig: beta={self.beta!r} must be a number >= 0.")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _max_layers(image_size):
    layers = 0
    while image_size % 2 ** (layers + 1) == 0:
        layers += 1
    return layers


def _check_int(config, name, minimum=None, allowed=None):
    value = getattr(config, name)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if allowed is not None and (not is_int or value not in allowed):
        raise ValueError(f"VAEConfig: {name}={value!r} is not supported; use one of {list(allowed)}.")
    if minimum is not None and (not is_int or value < minimum):
        raise ValueError(f"VAEConfig: {name}={value!r} must be an integer >= {minimum}.")


__all__ = ["VAEConfig"]
