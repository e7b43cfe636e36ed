"""Image encoder configuration (shared by the encoder, its classification head, its SimCLR projection head and
its autoencoder).

This file is self-contained (it imports only from `transformers`) so that a saved model folder loads with
`trust_remote_code=True` where hfgen is not installed.
"""

from dataclasses import field

from transformers import PreTrainedConfig


class ImageEncoderConfig(PreTrainedConfig):
    r"""
    Configuration of the hfgen image encoder family: a small ResNet-style CNN (He et al. 2016, the CIFAR variant:
    3x3 stem, no max-pool) that maps an image to one feature vector of size `hidden_sizes[-1]`, and the heads built
    on it. One config serves every class of the family, as `BertConfig` does for BERT, so an autoencoder's or a
    SimCLR run's encoder weights load into [`ImageEncoderForImageClassification`] with `from_pretrained`.

    Encoder:
        image_size (`int`, *optional*, defaults to 28):
            Height and width of the square input images, 8 to 128 (28-64 is the intended range).
        num_channels (`int`, *optional*, defaults to 1):
            Image channels: 1 (grayscale) or 3 (RGB). Data with the other number of channels is refused unless the
            training recipe converts it (`data.convert_image_mode`).
        hidden_sizes (`list[int]`, *optional*, defaults to `[32, 64, 128]`):
            Channels of each stage. Every stage after the first halves the height and width (28 -> 14 -> 7).
        depths (`list[int]`, *optional*, defaults to `[1, 1, 1]`):
            Residual blocks (two 3x3 convs each) per stage; same length as `hidden_sizes`.
        stem_stride (`int`, *optional*, defaults to 1):
            Stride of the 3x3 stem conv: 1 keeps full resolution in the first stage (the CIFAR ResNet); 2 halves it
            first, for about 4x less compute (28 -> 14 -> 7 -> 4 with three stages).
        normalize_inputs (`bool`, *optional*, defaults to `True`):
            Map pixels from [0, 1] to [-1, 1] inside the model, so callers always pass [0, 1] images.

    Classification head ([`ImageEncoderForImageClassification`]):
        classifier_head (`str`, *optional*, defaults to `"linear"`):
            `"linear"` (one layer on the pooled features) or `"mlp"` (linear, ReLU, dropout, linear).
        classifier_hidden_size (`int`, *optional*):
            Width of the MLP head's hidden layer; defaults to `hidden_sizes[-1]`.
        classifier_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on the pooled features before the head.

    Contrastive projection head ([`ImageEncoderForContrastiveLearning`], SimCLR; dropped after pretraining):
        projection_hidden_size (`int`, *optional*):
            Hidden width of the 2-layer projection MLP; defaults to `hidden_sizes[-1]`.
        projection_dim (`int`, *optional*, defaults to 64):
            Size of the embedding the contrastive loss sees.

    Autoencoder ([`ImageAutoencoderModel`]):
        code_size (`int`, *optional*):
            Units of the sigmoid bottleneck between encoder and decoder; defaults to `hidden_sizes[-1]`.
        reconstruction_loss (`str`, *optional*, defaults to `"bce"`):
            `"bce"` (pixels in [0, 1] as Bernoulli probabilities) or `"mse"`; per pixel, averaged.
        sparsity_weight (`float`, *optional*, defaults to 0.0):
            Weight of the sparse-autoencoder penalty sum_j KL(rho || rho_hat_j) on the bottleneck code (Ng 2011);
            0 disables it.
        sparsity_target (`float`, *optional*, defaults to 0.05):
            rho, the target mean activation of each code unit, in (0, 1).
        denoising (`str`, *optional*, defaults to `"none"`):
            Corrupt the input while training and reconstruct the clean image (Vincent et al. 2008): `"none"`,
            `"gaussian"` (add N(0, noise_std^2), clamp to [0, 1]) or `"mask"` (zero a random `mask_ratio` of
            `mask_patch_size` x `mask_patch_size` patches).
        noise_std (`float`, *optional*, defaults to 0.3):
            Standard deviation of the gaussian corruption, in [0, 1] pixel units.
        mask_ratio (`float`, *optional*, defaults to 0.5):
            Fraction of patches masked by the `"mask"` corruption.
        mask_patch_size (`int`, *optional*, defaults to 4):
            Side of the masked patches, in pixels.

    Example:

    ```python
    >>> import torch
    >>> from hfgen.models import ImageEncoderConfig, ImageEncoderModel
    >>> model = ImageEncoderModel(ImageEncoderConfig(hidden_sizes=[16, 32], depths=[1, 1]))
    >>> model(torch.rand(4, 1, 28, 28)).pooler_output.shape
    torch.Size([4, 32])
    ```
    """

    model_type = "hfgen-image-encoder"

    image_size: int = 28
    num_channels: int = 1
    hidden_sizes: list[int] = field(default_factory=lambda: [32, 64, 128])
    depths: list[int] = field(default_factory=lambda: [1, 1, 1])
    stem_stride: int = 1
    normalize_inputs: bool = True
    classifier_head: str = "linear"
    classifier_hidden_size: int | None = None
    classifier_dropout: float = 0.0
    projection_hidden_size: int | None = None
    projection_dim: int = 64
    code_size: int | None = None
    reconstruction_loss: str = "bce"
    sparsity_weight: float = 0.0
    sparsity_target: float = 0.05
    denoising: str = "none"
    noise_std: float = 0.3
    mask_ratio: float = 0.5
    mask_patch_size: int = 4

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _check_int(self, "image_size", minimum=8, maximum=128)
        _check_int(self, "num_channels", allowed=(1, 3))
        for name in ("hidden_sizes", "depths"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or not values or not all(_is_int(v) and v >= 1 for v in values):
                raise ValueError(f"ImageEncoderConfig: {name}={values!r} must be a non-empty list of positive integers.")
            setattr(self, name, list(values))
        if len(self.hidden_sizes) != len(self.depths):
            raise ValueError(
                f"ImageEncoderConfig: hidden_sizes {self.hidden_sizes} and depths {self.depths} must have the same "
                "length (one entry per stage)."
            )
        _check_int(self, "stem_stride", allowed=(1, 2))
        if self.image_size < self.stem_stride * 2 ** (len(self.hidden_sizes) - 1):
            raise ValueError(
                f"ImageEncoderConfig: {len(self.hidden_sizes)} stages halve image_size={self.image_size} below one pixel; "
                "use fewer hidden_sizes."
            )
        if self.classifier_head not in ("linear", "mlp"):
            raise ValueError(f"ImageEncoderConfig: classifier_head={self.classifier_head!r}; use 'linear' or 'mlp'.")
        for name in ("classifier_hidden_size", "projection_hidden_size", "code_size"):
            if getattr(self, name) is not None:
                _check_int(self, name, minimum=1)
        _check_int(self, "projection_dim", minimum=1)
        _check_number(self, "classifier_dropout", 0.0, 1.0, high_open=True)
        if self.reconstruction_loss not in ("bce", "mse"):
            raise ValueError(f"ImageEncoderConfig: reconstruction_loss={self.reconstruction_loss!r}; use 'bce' or 'mse'.")
        _check_number(self, "sparsity_weight", 0.0, None)
        _check_number(self, "sparsity_target", 0.0, 1.0, low_open=True, high_open=True)
        if self.denoising not in ("none", "gaussian", "mask"):
            raise ValueError(f"ImageEncoderConfig: denoising={self.denoising!r}; use 'none', 'gaussian' or 'mask'.")
        _check_number(self, "noise_std", 0.0, None)
        _check_number(self, "mask_ratio", 0.0, 1.0, high_open=True)
        _check_int(self, "mask_patch_size", minimum=1)

    @property
    def hidden_size(self) -> int:
        """Size of the pooled feature vector (the last stage's channels)."""
        return self.hidden_sizes[-1]

    @property
    def feature_map_size(self) -> int:
        """Height and width of the last stage's feature map (each later stage halves, rounding up)."""
        size = (self.image_size + self.stem_stride - 1) // self.stem_stride
        for _ in self.hidden_sizes[1:]:
            size = (size + 1) // 2
        return size


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(config, name, minimum=None, maximum=None, allowed=None):
    value = getattr(config, name)
    if allowed is not None and (not _is_int(value) or value not in allowed):
        raise ValueError(f"ImageEncoderConfig: {name}={value!r} is not supported; use one of {list(allowed)}.")
    if minimum is not None and (not _is_int(value) or value < minimum or (maximum is not None and value > maximum)):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"ImageEncoderConfig: {name}={value!r} must be an integer {bound}.")


def _check_number(config, name, low, high, low_open=False, high_open=False):
    value = getattr(config, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (high is None or (value < high if high_open else value <= high))
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open or high is None else "]"
        raise ValueError(f"ImageEncoderConfig: {name}={value!r} must be a number in {left}{low}, {high if high is not None else 'inf'}{right}.")


__all__ = ["ImageEncoderConfig"]
