"""train.sync_batchnorm: 2 processes, each with half of a batch, give the BatchNorm statistics, outputs and
gradients of 1 process with the whole batch."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from hfgen.train.sync_batchnorm import CrossProcessBatchNorm, convert_sync_batchnorm


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3), nn.BatchNorm1d(3))


def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 1, 8, 8, generator=generator) * 3 + 1  # mean and scale away from BatchNorm's init


def step(model, x):
    """Two training forwards (running statistics move twice), a backward of a loss over the whole batch."""
    model.train()
    model(x)
    out = model(x)
    (out.square().sum() * 0.1).backward()
    return out


def _worker(rank, port, folder):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    model, converted = convert_sync_batchnorm(tiny_net(), "cpu")
    assert converted == 2 and isinstance(model[1], CrossProcessBatchNorm)
    half = batch().chunk(2)[rank]
    out = step(model, half)
    torch.save({"out": out.detach(), "state": model.state_dict(),
                "grads": {n: p.grad for n, p in model.named_parameters()}}, os.path.join(folder, f"{rank}.pt"))
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_two_processes_with_half_batches_match_one_process_with_the_batch(tmp_path):
    reference = tiny_net()
    expected = step(reference, batch())
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{rank}.pt") for rank in range(2)]

    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), expected.detach(), rtol=1e-4, atol=1e-5)
    for name, value in reference.state_dict().items():  # running mean/var, num_batches_tracked: the whole batch's
        for r in ranks:
            torch.testing.assert_close(r["state"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    for name, parameter in reference.named_parameters():  # DDP sums (averages) the ranks' gradients
        torch.testing.assert_close(ranks[0]["grads"][name] + ranks[1]["grads"][name], parameter.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_one_process_and_evaluation_are_plain_batchnorm():
    plain, converted = tiny_net(), convert_sync_batchnorm(tiny_net(), "cpu")[0]
    x = batch()
    torch.testing.assert_close(step(converted, x), step(plain, x))
    plain.eval(), converted.eval()
    torch.testing.assert_close(converted(x), plain(x))
    assert converted.state_dict().keys() == plain.state_dict().keys()
