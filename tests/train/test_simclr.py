"""`method: contrastive` on images (SimCLR): the loss on image views is NT-Xent as written out, negatives gathered
from 2 processes give the gradients of 1 process with the whole batch, the loop trains, probes, resumes exactly,
keeps the replicas identical under DDP, and saves the encoder without its projection head."""

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForImageClassification

from hfgen.config import ImageAugmentSection, load_recipe
from hfgen.data.augment import simclr_views
from hfgen.losses.nt_xent import nt_xent_loss
from hfgen.models import (
    ImageEncoderConfig,
    ImageEncoderForContrastiveLearning,
    ImageEncoderModel,
)
from hfgen.train import run

from .helpers import assert_same_weights, kill_after_checkpoint, read_metrics, restore_checkpointing
from .test_ddp import launch

ROOT = Path(__file__).resolve().parents[2]
MODEL = {"type": "hfgen-image-encoder", "hidden_sizes": [8, 16], "depths": [1, 1], "projection_dim": 8}
SIMCLR = ("contrastive.temperature=0.5", "data.label_column=label", "contrastive.probe.knn_k=5")


def tiny_simclr_model():
    torch.manual_seed(0)
    model = ImageEncoderForContrastiveLearning(ImageEncoderConfig(hidden_sizes=[4, 8], depths=[1, 1], projection_dim=5))
    return model.eval()  # BatchNorm from running statistics: each image's embedding independent of its batch


def image_batch(count=6):
    return torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_loss_on_image_views_is_nt_xent_written_out():
    model = tiny_simclr_model()
    first, second = simclr_views(image_batch(), ImageAugmentSection(), generator=torch.Generator().manual_seed(1))
    z1, z2 = model(torch.cat([first, second])).embeddings.chunk(2)

    loss = nt_xent_loss(z1, z2, temperature=0.5)

    z = F.normalize(torch.cat([z1, z2]), dim=1).double()
    n = z1.shape[0]
    terms = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        denominator = sum(torch.exp(z[i] @ z[k] / 0.5) for k in range(2 * n) if k != i)
        terms.append(-torch.log(torch.exp(z[i] @ z[positive] / 0.5) / denominator))
    torch.testing.assert_close(loss.double(), torch.stack(terms).mean(), rtol=1e-5, atol=1e-6)


SIZES = (2, 4)  # images per rank: unequal, as a last partial batch would be


def _gradients(images, gather):
    model = tiny_simclr_model()
    first, second = simclr_views(images, ImageAugmentSection(), generator=torch.Generator().manual_seed(1))
    z1, z2 = model(torch.cat([first, second])).embeddings.chunk(2)
    loss = nt_xent_loss(z1, z2, temperature=0.5, gather_across_processes=gather)
    loss.backward()
    return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _worker(rank, world, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    images = image_batch(sum(SIZES))
    start, stop = sum(SIZES[:rank]), sum(SIZES[: rank + 1])
    # each rank draws its own views from the same seed: so as to compare with one process, draw for the whole
    # batch and keep this rank's rows (the augmentation is per image)
    first, second = simclr_views(images, ImageAugmentSection(), generator=torch.Generator().manual_seed(1))
    model = tiny_simclr_model()
    z1, z2 = model(torch.cat([first[start:stop], second[start:stop]])).embeddings.chunk(2)
    loss = nt_xent_loss(z1, z2, temperature=0.5)
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    dist.all_reduce(loss)
    dist.all_reduce(grad)  # DDP's average over ranks
    if rank == 0:
        torch.save((loss / world, grad / world), result_file)
    dist.destroy_process_group()


def test_two_processes_with_gathered_negatives_match_one_process_with_the_whole_batch(tmp_path):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "result.pt")), nprocs=2, join=True)
    loss, grad = torch.load(tmp_path / "result.pt")

    single_loss, single_grad = _gradients(image_batch(sum(SIZES)), gather=False)

    torch.testing.assert_close(loss, single_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, single_grad, rtol=1e-4, atol=1e-6)


def test_simclr_trains_probes_and_saves_the_encoder_without_its_head(write_recipe):
    out = run(load_recipe(write_recipe(
        "contrastive", *SIMCLR, "train.max_steps=20", "train.eval_every=10", "train.learning_rate=3e-3",
        "train.batch_size=16", model=MODEL,
    )))

    losses = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert len(losses) == 20 and sum(losses[-4:]) < sum(losses[:4])
    results = json.loads((out / "eval_results.json").read_text())
    assert 0 <= results["eval_linear_probe_accuracy"] <= 1 and 0 <= results["eval_knn_accuracy"] <= 1
    assert results["probe_train_images"] == 48 and results["probe_eval_images"] == 16
    assert any("eval_knn_accuracy" in m for m in read_metrics(out) if m["step"] == 10)
    assert (out / "samples" / "views.png").is_file() and (out / "preprocessor_config.json").is_file()
    assert "SimCLR" in (out / "README.md").read_text()

    saved = load_file(out / "model.safetensors")
    assert not any(key.startswith("projection") for key in saved)  # the head is dropped
    assert type(AutoModel.from_pretrained(out)) is ImageEncoderModel
    classifier = AutoModelForImageClassification.from_pretrained(out, num_labels=4)
    for name, tensor in classifier.image_encoder.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_killed_simclr_run_resumes_exactly(write_recipe, tmp_path, monkeypatch):
    common = ("contrastive.temperature=0.5", "train.max_steps=6", "train.save_every=2")
    reference = run(load_recipe(write_recipe("contrastive", *common, f"train.output_dir={tmp_path / 'reference'}", name="ref.yaml", model=MODEL)))


    recipe = write_recipe("contrastive", *common, model=MODEL)
    kill_after_checkpoint(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run(load_recipe(recipe))
    restore_checkpointing(monkeypatch)
    out = run(load_recipe(recipe))  # resume: auto, from step 4: same batches, same views, same weights
    assert_same_weights(out, reference)


def test_two_process_simclr_keeps_the_replicas_identical(write_recipe, tmp_path):
    recipe = write_recipe("contrastive", "contrastive.temperature=0.5", "train.max_steps=4", "train.save_every=2",
                          "train.batch_size=4", "train.num_processes=2", model=MODEL)
    result = launch(["--multi_gpu", "--num_processes", "2", "--main_process_port", "29531",
                     str(ROOT / "tests" / "train" / "ddp_dump_script.py"), str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "out"
    for step in (2, 4):
        rank0, rank1 = load_file(out / f"rank0-step{step}.safetensors"), load_file(out / f"rank1-step{step}.safetensors")
        assert int(rank0["world_size"]) == 2
        different = [k for k in rank0 if not torch.equal(rank0[k], rank1[k])]
        assert not different, f"replicas diverged at step {step}: {different[:5]}"
    assert (out / "config.json").is_file()
