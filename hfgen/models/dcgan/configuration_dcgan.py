"""DCGAN configuration.

This file is self-contained (it imports only from `transformers`) so that a saved model folder loads with
`trust_remote_code=True` where hfgen is not installed.
"""

from transformers import PreTrainedConfig


class DCGANConfig(PreTrainedConfig):
    r"""
    Configuration of a [`DCGANModel`]: a deep convolutional GAN (Radford et al., 2015, arXiv:1511.06434), optionally
    class-conditional (generator: label embedding concatenated to the latent; discriminator: projection head, Miyato &
    Koyama, 2018, arXiv:1802.05637).

    Args:
        image_size (`int`, *optional*, defaults to 28):
            Height and width of the square images. One of 28 (generator 1->7->14->28), 32 (1->4->8->16->32) or
            64 (1->4->8->16->32->64).
        num_channels (`int`, *optional*, defaults to 1):
            Image channels: 1 (grayscale) or 3 (RGB).
        latent_dim (`int`, *optional*, defaults to 100):
            Size of the generator's input noise vector z ~ N(0, I); 100 as in the paper.
        generator_width (`int`, *optional*, defaults to 64):
            Channels of the generator's last hidden layer ("ngf"); each earlier layer doubles it.
        discriminator_width (`int`, *optional*, defaults to 64):
            Channels of the discriminator's first layer ("ndf"); each later layer doubles it.
        num_classes (`int`, *optional*, defaults to 0):
            0 for an unconditional GAN; > 0 makes both networks class-conditional on labels in `[0, num_classes)`.
            Class names go in `id2label` (which then must have `num_classes` entries).
        label_embedding_dim (`int`, *optional*, defaults to 50):
            Size of the label embedding concatenated to the latent in a conditional generator. Unused when
            `num_classes == 0`.

    Example:

    ```python
    >>> from hfgen.models import DCGANConfig, DCGANModel
    >>> config = DCGANConfig(image_size=32, num_channels=3, num_classes=10)
    >>> model = DCGANModel(config)
    >>> images = model.generate(8, seed=0)  # (8, 3, 32, 32) in [0, 1]
    ```
    """

    model_type = "hfgen-dcgan"

    image_size: int = 28
    num_channels: int = 1
    latent_dim: int = 100
    generator_width: int = 64
    discriminator_width: int = 64
    num_classes: int = 0
    label_embedding_dim: int = 50

    def __post_init__(self, **kwargs):
        # Without this, PreTrainedConfig fills id2label with two placeholder labels whatever num_classes says.
        if self.id2label is None and isinstance(self.num_classes, int) and self.num_classes > 0:
            kwargs.setdefault("num_labels", self.num_classes)
        super().__post_init__(**kwargs)
        _check_int(self, "image_size", allowed=(28, 32, 64))
        _check_int(self, "num_channels", allowed=(1, 3))
        for name in ("latent_dim", "generator_width", "discriminator_width", "label_embedding_dim"):
            _check_int(self, name, minimum=1)
        _check_int(self, "num_classes", minimum=0)
        if self.num_classes > 0 and len(self.id2label) != self.num_classes:
            raise ValueError(
                f"DCGANConfig: id2label has {len(self.id2label)} entries but num_classes={self.num_classes}; "
                "give one class name per class, or leave id2label unset."
            )


def _check_int(config, name, minimum=None, allowed=None):
    value = getattr(config, name)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if allowed is not None and (not is_int or value not in allowed):
        raise ValueError(f"DCGANConfig: {name}={value!r} is not supported; use one of {list(allowed)}.")
    if minimum is not None and (not is_int or value < minimum):
        raise ValueError(f"DCGANConfig: {name}={value!r} must be an integer >= {minimum}.")


__all__ = ["DCGANConfig"]
