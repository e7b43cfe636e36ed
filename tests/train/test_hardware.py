"""What the engine decides from the hardware: the device it will train on, the precision `auto` picks, and the
speed choices per device type."""

from hfgen.train import hardware


def test_cpu_facts_name_the_cpu_and_its_bf16_support():
    facts = hardware.cpu_facts()
    assert facts.model and facts.cores >= 1
    assert facts.native_bf16 == bool(facts.bf16_flags) or facts.native_bf16  # flags imply native; torch may add it
    assert facts.model in facts.describe() and ("native bf16" in facts.describe())


def test_planned_device_follows_accelerate_use_cpu(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    assert hardware.planned_device_type() == "cpu"


def test_auto_precision_on_gpus(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert hardware.resolve_mixed_precision("auto", "cuda")[0] == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert hardware.resolve_mixed_precision("auto", "cuda")[0] == "bf16"
    assert hardware.resolve_mixed_precision("auto", "mps")[0] == "no"


def test_speed_choices_differ_by_device():
    cpu, cuda = hardware.speed_choices("cpu"), hardware.speed_choices("cuda")
    assert (cpu.attention, cpu.fast_dropout, cpu.texts_per_forward) == ("eager", True, 32)
    assert (cuda.attention, cuda.fast_dropout, cuda.texts_per_forward) == ("sdpa", False, None)
