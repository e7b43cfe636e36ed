"""Image processor of the image encoder family: what `pipeline("image-classification")` and `AutoImageProcessor`
use to turn PIL images (or arrays) into the `pixel_values` the model was trained on. PIL and numpy only (no
torchvision).

The rule is the one hfgen's training data goes through (`hfgen.data.images.pil_to_tensor`; a test checks they
agree): convert the mode to "L" (1 channel) or "RGB" (3 channels), compositing transparency on white and scaling
16-bit greyscale to 8 bits; centre-crop to a square on the shorter side; resize to `image_size` with bicubic
resampling; scale to [0, 1]. Self-contained (imports only numpy, PIL and transformers) for `trust_remote_code`.
"""

import numpy as np
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

_MODE_FOR_CHANNELS = {1: "L", 3: "RGB"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}


class ImageEncoderImageProcessor(BaseImageProcessor):
    r"""
    Args:
        image_size (`int`, *optional*, defaults to 28): side of the square output.
        num_channels (`int`, *optional*, defaults to 1): 1 (greyscale, mode "L") or 3 (RGB).
    """

    model_input_names = ["pixel_values"]  # noqa: RUF012 (transformers reads this class attribute)

    def __init__(self, image_size: int = 28, num_channels: int = 1, **kwargs):
        super().__init__(**kwargs)
        if num_channels not in _MODE_FOR_CHANNELS:
            raise ValueError(f"ImageEncoderImageProcessor: num_channels={num_channels!r}; use 1 or 3.")
        self.image_size = image_size
        self.num_channels = num_channels

    def preprocess(self, images, return_tensors=None, **kwargs) -> BatchFeature:
        """One image or a list (PIL images, or uint8 arrays (H, W) / (H, W, C)) -> `{"pixel_values": (N, C, H, W)}`
        float32 in [0, 1]."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        pixels = np.stack([self._to_array(image) for image in images])  # (N, C, image_size, image_size)
        return BatchFeature(data={"pixel_values": pixels}, tensor_type=return_tensors)

    def _to_array(self, image) -> np.ndarray:
        if not isinstance(image, Image.Image):
            array = np.asarray(image)
            if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
                array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
            if array.dtype != np.uint8:  # floats in [0, 1]
                array = np.clip(np.rint(array.astype(np.float64) * 255), 0, 255).astype(np.uint8)
            image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
        target = _MODE_FOR_CHANNELS[self.num_channels]
        if image.mode != target:
            image = _convert_mode(image, target)
        width, height = image.size
        if width != height:
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
        if image.size != (self.image_size, self.image_size):
            image = image.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        array = np.asarray(image, dtype=np.float32) / 255.0
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # (C, H, W)


def _convert_mode(image: Image.Image, target_mode: str) -> Image.Image:
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert(target_mode)
    if image.mode == "I" or image.mode.startswith("I;16"):
        scaled = np.asarray(image).astype(np.float64) / 257.0  # 65535 -> 255
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L").convert(target_mode)
    return image.convert(target_mode)


__all__ = ["ImageEncoderImageProcessor"]
