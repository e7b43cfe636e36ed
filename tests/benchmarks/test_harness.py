"""`scripts/benchmark.py all` (aggregation, table, failures) on stand-in workloads, and the memory probe in a
fresh process; no real benchmark runs here."""

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from hfgen import benchmarks
from hfgen.benchmarks.memory import measure_peak_memory
from hfgen.cli import benchmark_main
from hfgen.train.hardware import cpu_facts

ROOT = Path(__file__).resolve().parents[2]


def _workload(name, hfgen_speed, peer_speed, quality=(0.8, 0.7), higher=True):
    def run(quick=False, threads=None):
        return {
            "workload": name, "settings": {"quick": quick, "threads": threads},
            "hfgen": {"items_per_s": hfgen_speed, "score": quality[0], "peak_memory": {"peak_rss_mb": 900.0}, "precision": "bf16"},
            "peer": {"name": "peer", "items_per_s": peer_speed, "score": quality[1], "peak_memory": {"peak_rss_mb": 1500.0}, "precision": "no"},
            "ratio": hfgen_speed / peer_speed, "auto_vs_best_fixed": 0.95,
            "throughput_key": "items_per_s", "quality_key": "score", "quality_higher_is_better": higher,
        }

    return run


def _broken(quick=False, threads=None):
    raise RuntimeError("peer not installed\nsecond line")


@pytest.fixture
def fake_workloads(monkeypatch):
    """Three stand-in workloads: fast (meets 1.5x), slow (misses 2x), broken (raises), run in that order."""
    runs = {"fast": _workload("fast", 300.0, 100.0), "slow": _workload("slow", 150.0, 100.0, (2.0, 1.5), higher=False), "broken": _broken}
    for name, run in runs.items():
        module = types.ModuleType(f"fake_bench_{name}")
        module.run = run
        monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(benchmarks, "WORKLOADS", {name: f"fake_bench_{name}" for name in runs})
    monkeypatch.setattr(benchmarks, "TARGETS", {"fast": 1.5, "broken": 1.2, "slow": 2.0})


def test_all_reports_the_failure_runs_the_rest_and_judges_targets(fake_workloads, tmp_path, capsys):
    path = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as exit_info:
        benchmark_main(["all", "--quick", "--threads", "1", "--json", str(path)])
    assert exit_info.value.code not in (0, None) and "broken" in str(exit_info.value.code)

    results = json.loads(path.read_text())
    assert list(results) == ["machine", "fast", "broken", "slow"]  # TARGETS' order, the broken one did not stop the next
    assert results["fast"]["ratio"] == 3.0 and results["fast"]["target_met"] is True
    assert results["slow"]["ratio"] == 1.5 and results["slow"]["target_met"] is False
    assert results["fast"]["settings"] == {"quick": True, "threads": 1}
    assert results["broken"]["error"].startswith("RuntimeError: peer not installed") and results["broken"]["target_met"] is False

    lines = capsys.readouterr().out.strip().splitlines()
    machine_line, table = lines[-7], lines[-5:]  # the machine, a blank line, then the table
    assert machine_line == f"Machine: {cpu_facts().describe()}; torch {torch.__version__}; torch threads per contender: 1"
    assert table[0].startswith("| workload |")
    fast, broken, slow = table[2:]
    assert "| 300 items_per_s (bf16) | 100 items_per_s (fp32) | 3.00x | >= 1.5x | yes |" in fast
    assert "score: 0.8 / 0.7 (higher is better)" in fast and "900 MB RSS / 1,500 MB RSS | 0.95 |" in fast
    assert "| 1.50x | >= 2.0x | no |" in slow and "(lower is better)" in slow
    assert "FAILED: RuntimeError: peer not installed |" in broken


def test_all_records_the_machine_it_ran_on(fake_workloads, tmp_path):
    results = benchmarks.run_all(quick=True, threads=3, json_path=str(tmp_path / "bench.json"))
    machine = json.loads((tmp_path / "bench.json").read_text())["machine"]
    assert machine == results["machine"] == {**cpu_facts().as_dict(), "cpu": cpu_facts().describe(), "torch": torch.__version__, "threads": 3}
    assert set(machine) >= {"model", "native_bf16", "bf16_flags", "cores"} and isinstance(machine["native_bf16"], bool)
    assert benchmarks.failed(results) == ["broken"]  # the machine entry is not a workload


def test_all_exits_zero_when_every_workload_finishes(fake_workloads, monkeypatch, capsys):
    monkeypatch.setattr(benchmarks, "TARGETS", {"fast": 1.5, "slow": 2.0})
    benchmark_main(["all"])
    assert "| slow |" in capsys.readouterr().out


def test_peak_memory_of_a_probe_in_a_fresh_process(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    parent = torch.ones(768 * 2**20 // 4)  # a benchmark that has grown: its children must not report its peak
    big = measure_peak_memory("tests.benchmarks.probe_module", "big", "bf16", quick=True, threads=1)
    small = measure_peak_memory("tests.benchmarks.probe_module", "small", "no")
    del parent
    assert big["quick"] is True and big["threads"] == 1 and small["threads"] is None
    assert big["precision"] == "bf16" and small["precision"] == "no"
    assert big["peak_rss_mb"] - small["peak_rss_mb"] >= 200


def test_contenders_run_one_after_the_other_in_fresh_processes(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    precisions = {"hfgen": {"mixed_precision": "auto", "precision": "bf16", "precision_reason": "auto: native bf16"},
                  "peer": {"precision": "no", "precision_trial": {"no": 2.0, "bf16": 1.0}, "precision_reason": "measured"}}
    results = benchmarks.run_contenders("tests.benchmarks.fake_contender", ["hfgen", "peer"], {"steps": 3}, tmp_path, precisions)
    assert list(results) == ["hfgen", "peer"]
    assert results["peer"]["contender"] == "peer" and results["peer"]["steps"] == 3 and results["peer"]["wall_s"] > 0
    # each process was told its own precision (hfgen: its train.mixed_precision), and its result records the entry
    assert json.loads((tmp_path / "hfgen.settings.json").read_text())["precision"] == "auto"
    assert json.loads((tmp_path / "peer.settings.json").read_text())["precision"] == "no"
    assert results["hfgen"]["precision"] == "bf16" and results["hfgen"]["mixed_precision"] == "auto"
    assert results["peer"]["precision"] == "no" and results["peer"]["precision_trial"] == {"no": 2.0, "bf16": 1.0}
    # what a run reports it used wins over the precision expected for it
    used = benchmarks.run_contenders("tests.benchmarks.fake_contender", ["hfgen"], {"used": "no"}, tmp_path, precisions)
    assert used["hfgen"]["precision"] == "no" and used["hfgen"]["mixed_precision"] == "auto"
    with pytest.raises(RuntimeError, match="benchmark contender crash failed:\n.*crashed on purpose"):
        benchmarks.run_contenders("tests.benchmarks.fake_contender", ["crash"], {}, tmp_path, {"crash": {"precision": "no"}})


def test_distill_options_reach_its_run_and_unknown_ones_are_refused(monkeypatch):
    from hfgen.benchmarks import distill

    seen = {}
    monkeypatch.setattr(distill, "run", lambda quick=False, threads=None, sets=distill.SETS, students=tuple(distill.STUDENTS):
                        seen.update(quick=quick, sets=sets, students=students) or {"workload": "distill"})
    benchmark_main(["distill", "--quick", "--sets", "20newsgroups", "--students", "minilm2"])
    assert seen == {"quick": True, "sets": ("20newsgroups",), "students": ("minilm2",)}
    with pytest.raises(ValueError, match=r"'distill' takes no option \['layers'\]"):
        benchmarks.run_workload("distill", layers=2)
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        benchmark_main(["distill", "--students", "cnn"])
