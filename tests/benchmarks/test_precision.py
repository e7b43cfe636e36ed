"""Each benchmark contender's precision (`hfgen.benchmarks.precision`): hfgen's `auto` and the other fixed precision,
the peer's faster of two measured throughputs, `auto_vs_best_fixed`, and the result shape they go into; no training."""

import json
from pathlib import Path

import pytest

from hfgen import benchmarks
from hfgen.benchmarks import precision
from hfgen.train.hardware import cpu_facts

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("speeds", "chosen"), [({"no": 100.0, "bf16": 250.0}, "bf16"), ({"no": 300.0, "bf16": 120.0}, "no"),
                                                ({"no": 50.0, "bf16": 50.0}, "no")])  # a tie keeps fp32
def test_the_peer_runs_at_the_faster_of_its_two_measured_throughputs(speeds, chosen):
    measured = []

    def measure(name):
        measured.append(name)
        return speeds[name]

    picked = precision.pick_peer_precision(measure, trial="4 steps")
    assert measured == ["no", "bf16"]  # each measured once
    assert picked["precision"] == chosen and picked["precision_trial"] == speeds
    assert picked["precision_reason"].startswith("measured: the faster in a trial of 4 steps (fp32 ")


def test_a_gpu_without_bf16_tries_the_peer_in_fp32_only(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert precision.peer_precisions("cuda") == ("no",)
    assert precision.peer_precisions("cpu") == ("no", "bf16")


def test_the_peer_trial_in_fresh_processes_picks_the_faster(monkeypatch, tmp_path):
    """The fake contender reports the throughput of the precision it was given: fp32 3.0, bf16 1.0."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    prepared = []
    picked = benchmarks.peer_precision_in_processes("tests.benchmarks.fake_contender", "peer", {"speeds": {"no": 3.0, "bf16": 1.0}},
                                                    tmp_path, "items_per_s", trial="2 steps", prepare=prepared.append)
    assert picked["precision"] == "no" and picked["precision_trial"] == {"no": 3.0, "bf16": 1.0}
    assert prepared == [tmp_path / "trial-no", tmp_path / "trial-bf16"]  # each trial in its own folder


@pytest.mark.parametrize(("auto", "other"), [("bf16", "no"), ("no", "bf16"), ("fp16", "no")])
def test_hfgen_runs_at_auto_and_at_the_fixed_precision_auto_did_not_pick(monkeypatch, auto, other):
    monkeypatch.setattr(precision, "resolve_mixed_precision", lambda requested, device: (auto, f"{requested}: chose {auto} on {device}"))
    arms = precision.hfgen_arms("cpu")
    assert arms["hfgen"] == {"mixed_precision": "auto", "precision": auto, "precision_reason": f"auto: chose {auto} on cpu"}
    assert arms["hfgen_other_precision"]["precision"] == arms["hfgen_other_precision"]["mixed_precision"] == other
    # what each process is told: hfgen's recipe gets `auto` itself, a peer the precision chosen for it
    assert precision.told(arms["hfgen"]) == "auto" and precision.told(arms["hfgen_other_precision"]) == other
    assert precision.told({"precision": "bf16", "precision_trial": {}}) == "bf16"


def test_hfgen_and_its_other_precision_must_differ():
    with pytest.raises(ValueError, match="both trained in 'bf16'"):
        benchmarks.comparison("w", {}, hfgen={"items_per_s": 2.0, "precision": "bf16"}, peer={"items_per_s": 1.0},
                              hfgen_other_precision={"items_per_s": 1.0, "precision": "bf16"}, throughput_key="items_per_s",
                              quality_key="score", threads=1)


def test_the_precision_an_hfgen_run_used_comes_from_its_eval_results():
    results = {"train_images_per_s": 5.0, "mixed_precision": "no", "mixed_precision_reason": "auto: no native bf16"}
    assert precision.precision_used(results) == {"precision": "no", "precision_reason": "auto: no native bf16"}


def test_hfgen_arms_follow_the_machine():
    arms = precision.hfgen_arms("cpu")
    assert arms["hfgen"]["precision"] == ("bf16" if cpu_facts().native_bf16 else "no")
    assert cpu_facts().describe() in arms["hfgen"]["precision_reason"]


@pytest.mark.parametrize(("auto", "other", "expected"), [(90.0, 100.0, 0.9), (120.0, 100.0, 1.0), (100.0, 100.0, 1.0)])
def test_auto_vs_best_fixed_is_auto_over_the_faster_of_the_two(auto, other, expected):
    hfgen = {"items_per_s": auto, "precision": "bf16"}
    peer = {"name": "peer", "items_per_s": 50.0, "precision": "no", "precision_trial": {"no": 50.0, "bf16": 40.0}}
    result = benchmarks.comparison("w", {"steps": 3}, hfgen=hfgen, peer=peer,
                                   hfgen_other_precision={"items_per_s": other, "precision": "no"},
                                   throughput_key="items_per_s", quality_key="score", threads=2, peer_default={"items_per_s": 1.0})
    assert result["auto_vs_best_fixed"] == pytest.approx(expected)
    assert result["ratio"] == pytest.approx(auto / 50.0)  # the shape `summary_table` and `run_all` read is unchanged
    assert result["hfgen"]["precision"] == "bf16" and result["peer"]["precision_trial"] == {"no": 50.0, "bf16": 40.0}
    assert result["settings"]["steps"] == 3 and result["settings"]["precision"] == precision.POLICY
    assert result["machine"]["model"] == cpu_facts().model and result["machine"]["threads"] == 2
    assert result["peer_default"] == {"items_per_s": 1.0}
    json.dumps(result)  # goes into the JSON as it is


def test_finetune_gives_every_contender_its_precision(monkeypatch):
    """`finetune.run`'s wiring, with the processes faked: the Trainer's trial precision goes to all three Trainers,
    hfgen's arms get `auto` and the other precision, and the result records them."""
    from hfgen.benchmarks import finetune

    chosen = {"precision": "no", "precision_trial": {"no": 9.0, "bf16": 4.0}, "precision_reason": "measured"}
    calls = {}

    def fake_trial(module, peer, trial_settings, folder, throughput_key, trial):
        calls["trial"] = (peer, trial_settings["train_examples"], throughput_key)
        return dict(chosen)

    def fake_run_contenders(module, contenders, settings, folder, precisions):
        calls["precisions"] = precisions
        return {name: {"examples_per_s": 10.0 + i, "accuracy": 0.5, **precisions[name]} for i, name in enumerate(contenders)}

    monkeypatch.setattr(benchmarks, "peer_precision_in_processes", fake_trial)
    monkeypatch.setattr(benchmarks, "run_contenders", fake_run_contenders)
    result = finetune.run(quick=True, threads=1)
    assert calls["trial"] == ("trainer_tuned", finetune.TRIAL_EXAMPLES, "examples_per_s")
    assert {name: precision.told(entry) for name, entry in calls["precisions"].items()} == {
        "hfgen": "auto", "hfgen_other_precision": precision.hfgen_arms()["hfgen_other_precision"]["precision"],
        "trainer_tuned": "no", "trainer_padding": "no", "trainer_default": "no"}
    assert result["peer"]["precision"] == result["peer_default"]["precision"] == "no"
    assert result["hfgen"]["mixed_precision"] == "auto" and result["auto_vs_best_fixed"] == pytest.approx(10.0 / 11.0)
    assert "machine" in result and result["machine"]["threads"] == 1
