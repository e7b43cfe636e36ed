"""Run a recipe under `accelerate launch` and, at every checkpoint, dump each rank's copy of every
prepared model (parameters and buffers) to <output_dir>/rank<i>-step<N>.safetensors, so the test
can compare the replicas. Used by test_ddp.py; not a pytest module."""

import sys
from pathlib import Path

from safetensors.torch import save_file

import hfgen.train.autoencoder as autoencoder
import hfgen.train.contrastive_images as contrastive_images
import hfgen.train.gan as gan
import hfgen.train.vae as vae
from hfgen.config import load_recipe
from hfgen.train import run


def dumping(save_checkpoint):
    def save_and_dump(accelerator, output_dir, state, keep_last):
        tensors = {}
        for index, model in enumerate(accelerator._models):
            for name, tensor in accelerator.unwrap_model(model).state_dict().items():
                tensors[f"{index}.{name}"] = tensor.detach().cpu().contiguous()
        tensors["world_size"] = __import__("torch").tensor(accelerator.num_processes)
        save_file(tensors, str(Path(output_dir) / f"rank{accelerator.process_index}-step{state.step}.safetensors"))
        return save_checkpoint(accelerator, output_dir, state, keep_last)

    return save_and_dump


if __name__ == "__main__":
    gan.save_checkpoint = dumping(gan.save_checkpoint)
    vae.save_checkpoint = dumping(vae.save_checkpoint)
    autoencoder.save_checkpoint = dumping(autoencoder.save_checkpoint)
    contrastive_images.save_checkpoint = dumping(contrastive_images.save_checkpoint)
    run(load_recipe(sys.argv[1], sys.argv[2:]))
