"""FSDP2 on CPU processes (gloo): the BERT-family methods train, evaluate, checkpoint, resume and save under it as
under DDP, and every other method is refused before training.

Accelerate enables FSDP on accelerators only; for a CPU launch that asks for it (`--use_fsdp`, or an FSDP config
file, with ACCELERATE_USE_CPU=1) hfgen switches Accelerate's FSDP2 path on (hfgen.train.sharding), so these
tests run the same `fully_shard` wrapping and state-dict gathering a GPU launch does."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .classifier_fixtures import classifier_recipe, task_data, tiny_bert  # noqa: F401 (fixtures)
from .test_contrastive import contrastive_recipe, text_files  # noqa: F401 (fixtures)
from .test_mlm import mlm_recipe  # noqa: F401 (fixture)
from .helpers import assert_same_weights, launch_processes, read_metrics

ROOT = Path(__file__).resolve().parents[2]
FSDP2 = ["--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
         "--fsdp_state_dict_type", "FULL_STATE_DICT", "--fsdp_reshard_after_forward", "true"]
FSDP2_CONFIG = ["--config_file", str(ROOT / "recipes" / "accelerate" / "fsdp2.yaml")]  # the shipped config: BertLayer named
DDP = ["--multi_gpu"]


def launch(engine: list[str], script: str, recipe, *overrides: str, timeout: int = 400):
    """2 CPU processes under `engine` (FSDP2 flags or config file, or DDP) running scripts/<script> on `recipe`."""
    return launch_processes(script, recipe, *overrides, engine=engine, timeout=timeout)


def losses(output_dir) -> list[float]:
    return [row["loss"] for row in read_metrics(output_dir) if "loss" in row]


def test_fsdp2_classifier_trains_like_ddp_resumes_exactly_and_saves_an_ordinary_folder(classifier_recipe, tmp_path):
    """fp32, 2 processes, launched with the shipped recipes/accelerate/fsdp2.yaml: FSDP2 follows DDP's loss curve and
    ends at its weights (within float rounding: FSDP reduce-scatters where DDP all-reduces), keeps the same best
    model, and writes the same ordinary folder; resumed from a checkpoint of a shorter run, it ends bitwise where an
    uninterrupted FSDP2 run does."""
    from transformers import AutoModelForSequenceClassification, pipeline

    from hfgen.train.checkpoint import list_checkpoints

    common = ["train.save_every=4", "train.max_steps=24", "train.eval_every=8", "classifier.eval_every_epoch=false",
              "train.log_every=1", "train.max_grad_norm=1.0", "train.learning_rate=1e-2", "train.warmup_steps=4"]  # steps 1-4 the same whatever max_steps
    runs = {"ddp": (DDP, common), "fsdp": (FSDP2_CONFIG, common), "first": (FSDP2_CONFIG, [*common, "train.max_steps=5"])}
    for name, (engine, overrides) in runs.items():
        recipe = classifier_recipe("single_label", *overrides, f"train.output_dir={tmp_path / name}", name=f"{name}.yaml")
        done = launch(engine, "finetune.py", recipe)
        assert done.returncode == 0, done.stderr[-5000:]
        assert ("FSDP2 on 2 CPU processes" in done.stderr) == (engine is FSDP2_CONFIG)
    checkpoint = [p for p in list_checkpoints(tmp_path / "first") if p.name.endswith("00000004")][0]
    recipe = classifier_recipe("single_label", *common, f"train.output_dir={tmp_path / 'resumed'}", f"train.resume={checkpoint}",
                               name="resumed.yaml")
    done = launch(FSDP2_CONFIG, "finetune.py", recipe)
    assert done.returncode == 0, done.stderr[-5000:]
    ddp, fsdp, resumed = tmp_path / "ddp", tmp_path / "fsdp", tmp_path / "resumed"

    assert len(losses(fsdp)) == 24 and losses(fsdp) == pytest.approx(losses(ddp), rel=1e-5)
    a, b = load_file(ddp / "model.safetensors"), load_file(fsdp / "model.safetensors")
    # (attention key biases have a zero gradient in exact arithmetic, so Adam turns rounding noise into their values)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a if not k.endswith("key.bias"))
    ddp_results, fsdp_results = (json.loads((out / "eval_results.json").read_text()) for out in (ddp, fsdp))
    assert fsdp_results["eval_accuracy"] == ddp_results["eval_accuracy"] > 0.6  # it learned, the same
    assert fsdp_results["best_step"] == ddp_results["best_step"]
    # the same ordinary folder as DDP's, loadable by transformers and a pipeline
    assert sorted(p.name for p in fsdp.iterdir() if p.is_file()) == sorted(p.name for p in ddp.iterdir() if p.is_file())
    assert torch.equal(AutoModelForSequenceClassification.from_pretrained(fsdp).classifier.weight.detach(), b["classifier.weight"])
    assert pipeline("text-classification", model=str(fsdp), device="cpu")("a great fun film")[0]["label"] in {"pos", "neg"}
    # checkpoints hold whole weights, as DDP's do; resuming one is exact
    assert load_file(list_checkpoints(fsdp)[-1] / "model.safetensors").keys() == load_file(list_checkpoints(ddp)[-1] / "model.safetensors").keys()
    assert_same_weights(resumed, fsdp)
    assert losses(resumed) == losses(fsdp)[4:]


def test_fsdp2_mlm_trains_like_ddp_evaluates_every_sequence_once_and_resumes_exactly(mlm_recipe, tmp_path):
    """The MLM objective (the encoder with its tied prediction head inside hfgen's wrapper) under FSDP2: the DDP loss
    curve and held-out figures within float rounding, a stock BertForMaskedLM folder, and an exact resume."""
    from transformers import AutoModelForMaskedLM, BertForMaskedLM, pipeline

    from hfgen.train.checkpoint import list_checkpoints

    common = ["train.max_steps=16", "train.save_every=4", "train.eval_every=8", "train.log_every=1", "train.warmup_steps=4",
              "train.max_grad_norm=1.0", "train.num_processes=2"]
    # the DDP run trains the WordPiece vocabulary; the others use it (a new training may order tied tokens otherwise)
    runs = {"ddp": (DDP, common), "fsdp": (FSDP2, common), "first": (FSDP2, [*common, "train.max_steps=5"])}
    vocabulary = f"mlm.tokenizer={tmp_path / 'ddp' / 'tokenizer'}"
    for name, (engine, overrides) in runs.items():
        recipe = mlm_recipe(*overrides, *([] if name == "ddp" else [vocabulary]), f"train.output_dir={tmp_path / name}")
        done = launch(engine, "pretrain.py", recipe.source)
        assert done.returncode == 0, done.stderr[-5000:]
    checkpoint = [p for p in list_checkpoints(tmp_path / "first") if p.name.endswith("00000004")][0]
    recipe = mlm_recipe(*common, vocabulary, f"train.output_dir={tmp_path / 'resumed'}", f"train.resume={checkpoint}")
    done = launch(FSDP2, "pretrain.py", recipe.source)
    assert done.returncode == 0, done.stderr[-5000:]
    ddp, fsdp, resumed = tmp_path / "ddp", tmp_path / "fsdp", tmp_path / "resumed"

    assert len(losses(fsdp)) == 16 and losses(fsdp) == pytest.approx(losses(ddp), rel=1e-5)
    ddp_results, fsdp_results = (json.loads((out / "eval_results.json").read_text()) for out in (ddp, fsdp))
    assert fsdp_results["eval_scored_sequences"] == ddp_results["eval_scored_sequences"] == fsdp_results["eval_sequences"] > 0
    assert fsdp_results["eval_loss"] == pytest.approx(ddp_results["eval_loss"], rel=1e-5)
    assert fsdp_results["eval_loss"] < fsdp_results["initial_eval_loss"]
    model = AutoModelForMaskedLM.from_pretrained(fsdp)
    assert type(model) is BertForMaskedLM
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()  # still tied
    a, b = load_file(ddp / "model.safetensors"), load_file(fsdp / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a if not k.endswith("key.bias"))
    assert pipeline("fill-mask", model=str(fsdp), device="cpu")("the [MASK] sat")
    assert_same_weights(resumed, fsdp)
    assert losses(resumed) == losses(fsdp)[4:]


def test_fsdp2_simcse_trains_like_ddp_and_measures_retrieval_with_the_sharded_encoder(contrastive_recipe, tmp_path):
    """SimCSE with an MLP head under FSDP2: the DDP loss curve, the same retrieval figures before and after (every
    process runs the sharded encoder's `encode` through the objective), a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer

    common = ["contrastive.mlp_head=true", "train.max_steps=12", "train.eval_every=6", "train.save_every=6", "train.log_every=1",
              "train.batch_size=8", "train.num_processes=2", "train.max_grad_norm=1.0"]
    for name, engine in (("ddp", DDP), ("fsdp", FSDP2)):
        recipe = contrastive_recipe(*common, f"train.output_dir={tmp_path / name}", name=f"{name}.yaml")
        done = launch(engine, "pretrain.py", recipe)
        assert done.returncode == 0, done.stderr[-5000:]
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    assert len(losses(fsdp)) == 12 and losses(fsdp) == pytest.approx(losses(ddp), rel=1e-5)
    ddp_results, fsdp_results = (json.loads((out / "eval_results.json").read_text()) for out in (ddp, fsdp))
    for key in ("initial_retrieval_recall@1", "retrieval_recall@1", "retrieval_recall@5"):
        assert fsdp_results[key] == pytest.approx(ddp_results[key], abs=1e-6), key
    evaluated = [row for row in read_metrics(fsdp) if "retrieval_recall@1" in row]
    assert [row["step"] for row in evaluated] == [6, 12]  # during training and at the end
    assert sorted(p.name for p in fsdp.iterdir() if p.is_file()) == sorted(p.name for p in ddp.iterdir() if p.is_file())
    a, b = load_file(ddp / "model.safetensors"), load_file(fsdp / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a if not k.endswith("key.bias"))
    embeddings = SentenceTransformer(str(fsdp), device="cpu").encode(["a sentence", "another one"])
    assert embeddings.shape[0] == 2


def test_a_gan_launched_under_fsdp2_stops_before_training_with_the_reason_and_the_ddp_launch(tmp_path):
    recipe = tmp_path / "gan.yaml"
    recipe.write_text(f"""method: gan
model: {{type: hfgen-dcgan, latent_dim: 8, generator_width: 8, discriminator_width: 8}}
data: {{dataset: {tmp_path / 'images'}}}
train: {{output_dir: {tmp_path / 'out'}, max_steps: 2, batch_size: 4}}
""")
    done = launch(FSDP2, "pretrain.py", recipe, timeout=120)
    # every process stops with a LaunchError (exit 5): one message and no traceback of its own, nothing built
    assert done.returncode != 0 and "exitcode  : 5" in done.stderr, done.stderr[-3000:]
    assert "does not run under FSDP: FSDP accepts one model per Accelerator and a GAN trains two" in done.stderr
    assert "accelerate launch --multi_gpu" in done.stderr and "[rank0]: Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
