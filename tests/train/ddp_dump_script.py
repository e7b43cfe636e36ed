"""Run a recipe under `accelerate launch` and, at every checkpoint, dump each rank's copy of every
prepared model (parameters and buffers) to <output_dir>/rank<i>-step<N>.safetensors, so the test
can compare the replicas. Used by test_ddp.py; not a pytest module."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import hfgen.train.engine as engine
from hfgen.config import load_recipe
from hfgen.train import run


def dumping(save_checkpoint):
    def save_and_dump(run, stateful):
        accelerator, tensors = run.accelerator, {}
        for index, model in enumerate(run.models):
            for name, tensor in accelerator.unwrap_model(model).state_dict().items():
                tensors[f"{index}.{name}"] = tensor.detach().cpu().contiguous()
        tensors["world_size"] = torch.tensor(accelerator.num_processes)
        save_file(tensors, str(Path(run.output_dir) / f"rank{accelerator.process_index}-step{run.state.step}.safetensors"))
        return save_checkpoint(run, stateful)

    return save_and_dump


if __name__ == "__main__":
    engine.save_checkpoint = dumping(engine.save_checkpoint)
    run(load_recipe(sys.argv[1], sys.argv[2:]))
