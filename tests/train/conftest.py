import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory):
    """A `save_to_disk` DatasetDict of 48 train / 16 test 28x28 grey images (bright squares at
    4 class-dependent places, so there is something to learn), with a 4-class `label`."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)

    def split(count):
        images, labels = [], []
        for i in range(count):
            label = i % 4
            pixels = rng.integers(0, 40, size=(28, 28), dtype=np.uint8)  # (height, width)
            top, left = 2 + 12 * (label // 2), 2 + 12 * (label % 2)
            pixels[top : top + 12, left : left + 12] = 220
            images.append(Image.fromarray(pixels, mode="L"))
            labels.append(label)
        features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["tl", "tr", "bl", "br"])})
        return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)

    path = tmp_path_factory.mktemp("tiny-images") / "dataset"
    datasets.DatasetDict({"train": split(48), "test": split(16)}).save_to_disk(str(path))
    return path


@pytest.fixture
def write_recipe(tmp_path, tiny_images):
    """Write a tiny recipe for `method` (overrides as `section.key=value`) into tmp_path; returns its path."""
    import yaml

    from hfgen.config import apply_override

    def write(method, *overrides, name=None, model=None):
        model = model or {
            "gan": {"type": "hfgen-dcgan", "latent_dim": 8, "generator_width": 8, "discriminator_width": 8},
            "vae": {"type": "hfgen-vae", "latent_dim": 4, "hidden_widths": [8, 16]},
            "autoencoder": {"type": "hfgen-image-encoder", "hidden_sizes": [8, 16], "depths": [1, 1]},
            "diffusion": {"type": "unet2d", "sample_size": 28, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
                          "layers_per_block": 1, "norm_num_groups": 4, "down_block_types": ["DownBlock2D", "DownBlock2D"],
                          "up_block_types": ["UpBlock2D", "UpBlock2D"]},
        }[method]
        raw = {
            "method": method,
            "model": model,
            "data": {"dataset": str(tiny_images)},
            "train": {
                "output_dir": str(tmp_path / "out"),
                "max_steps": 6,
                "batch_size": 8,
                "learning_rate": 1.0e-3,
                "save_every": 2,
                "keep_last": 2,
                "log_every": 1,
                "sample_every": 3,
                "cpu_threads": 1,
                "mixed_precision": "no",  # fp32: exact comparisons, on any CPU
            },
        }
        if method == "diffusion":  # a short schedule and few sampler steps: tiny runs stay fast
            raw["diffusion"] = {"num_train_timesteps": 50, "num_inference_steps": 4, "num_sample_images": 8}
        for override in overrides:
            apply_override(raw, override)
        path = tmp_path / (name or f"{method}.yaml")
        path.write_text(yaml.safe_dump(raw))
        return path

    return write
