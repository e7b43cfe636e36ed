"""InfoNCE / NT-Xent: the formulas, and the cross-process gather whose gradients flow back to their owner:
2 processes with N examples each give the loss and the gradients of 1 process with the 2N examples."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from hfgen.losses.nt_xent import info_nce_loss, nt_xent_loss


def test_info_nce_is_cross_entropy_over_scaled_cosine_similarities():
    generator = torch.Generator().manual_seed(0)
    anchors, positives, negatives = (torch.randn(n, 8, generator=generator) for n in (5, 5, 3))
    candidates = torch.cat([positives, negatives])
    # sentence-transformers' MultipleNegativesRankingLoss: scale (20 = 1 / 0.05) * cos_sim, target i
    scores = F.cosine_similarity(anchors[:, None], candidates[None], dim=-1) / 0.05
    expected = F.cross_entropy(scores, torch.arange(5))
    torch.testing.assert_close(info_nce_loss(anchors, positives, negatives, temperature=0.05), expected)


def test_nt_xent_matches_simclr_written_out():
    generator = torch.Generator().manual_seed(0)
    view1, view2 = torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator)
    z = F.normalize(torch.cat([view1, view2]), dim=-1)
    losses = []
    for i in range(8):
        partner = (i + 4) % 8
        others = [j for j in range(8) if j != i]
        similarities = torch.stack([z[i] @ z[j] for j in others]) / 0.5
        losses.append(-similarities[others.index(partner)] + torch.logsumexp(similarities, 0))
    torch.testing.assert_close(nt_xent_loss(view1, view2, temperature=0.5), torch.stack(losses).mean())


SIZES = (3, 5)  # rows per rank: unequal, as a last partial batch would be


def _data():
    generator = torch.Generator().manual_seed(0)
    encoder = torch.nn.Linear(6, 4)
    with torch.no_grad():
        for p in encoder.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    x1, x2, hard = (torch.randn(sum(SIZES), 6, generator=generator) for _ in range(3))
    return encoder, x1, x2, hard


def _losses(encoder, x1, x2, hard, gather=True):
    """Both losses on (a slice of) the batch, and each one's gradient on the encoder's weight."""
    out = {}
    for name, loss_fn in (
        ("info_nce", lambda: info_nce_loss(encoder(x1), encoder(x2), encoder(hard), 0.05, gather)),
        ("nt_xent", lambda: nt_xent_loss(encoder(x1), encoder(x2), 0.5, gather)),
    ):
        encoder.zero_grad()
        loss = loss_fn()
        loss.backward()
        out[name] = (loss.detach(), encoder.weight.grad.clone())
    return out


def _worker(rank, world, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    encoder, x1, x2, hard = _data()
    start, stop = sum(SIZES[:rank]), sum(SIZES[: rank + 1])
    averaged = {}
    for gather in (True, False):
        for name, (loss, grad) in _losses(encoder, x1[start:stop], x2[start:stop], hard[start:stop], gather).items():
            dist.all_reduce(loss)  # the mean over ranks of the returned losses...
            dist.all_reduce(grad)  # ...and what DDP does to gradients: the mean over ranks
            averaged[name, gather] = (loss / world, grad / world)
    if rank == 0:
        torch.save(averaged, result_file)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Rank 0's view of both losses, with and without the gather, averaged over 2 real gloo processes."""
    folder = tmp_path_factory.mktemp("two-processes")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(folder / "init"), str(folder / "result.pt")), nprocs=2, join=True)
    return torch.load(folder / "result.pt")


@pytest.fixture(scope="module")
def single_process():
    return _losses(*_data())


def test_two_processes_give_the_loss_and_gradients_of_one_process_with_the_whole_batch(two_processes, single_process):
    for name, (loss, grad) in single_process.items():
        torch.testing.assert_close(two_processes[name, True][0], loss, rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(two_processes[name, True][1], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_without_the_gather_the_gradients_differ(two_processes, single_process):
    """The equivalence test above can fail: with local negatives only, the gradients are other ones."""
    for name, (loss, grad) in single_process.items():
        assert not torch.allclose(two_processes[name, False][1], grad, rtol=1e-3), name
