"""The `contrastive` benchmark's pairs: two adjacent spans of one text, one pair per text, the same for every run."""

from hfgen.benchmarks.contrastive import adjacent_span_pairs


def _texts():
    """Text i is words "i.0 i.1 ...", so a span names its text and position; texts 3 and 7 are too short for 2 x 4 words."""
    return [" ".join(f"{i}.{j}" for j in range(7 if i in (3, 7) else 10 + 3 * i)) for i in range(12)]


def test_anchor_and_positive_are_adjacent_spans_of_one_text():
    pairs = adjacent_span_pairs(_texts(), count=100, words=4, seed=0)
    assert len(pairs) == 10  # every long-enough text once; the two short ones skipped
    sources = []
    for pair in pairs:
        anchor, positive = pair["anchor"].split(), pair["positive"].split()
        assert len(anchor) == len(positive) == 4
        texts = {word.split(".")[0] for word in anchor + positive}
        positions = [int(word.split(".")[1]) for word in anchor + positive]
        assert len(texts) == 1 and positions == list(range(positions[0], positions[0] + 8))
        sources.append(texts.pop())
    assert sorted(sources, key=int) == [str(i) for i in range(12) if i not in (3, 7)]


def test_pairs_are_deterministic_per_seed_and_stop_at_count():
    texts = _texts()
    first = adjacent_span_pairs(texts, count=5, words=4, seed=1)
    assert len(first) == 5 and first == adjacent_span_pairs(texts, count=5, words=4, seed=1)
    assert first != adjacent_span_pairs(texts, count=5, words=4, seed=2)
