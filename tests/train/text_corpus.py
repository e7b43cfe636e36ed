"""Tiny, learnable English for the text-method tests (not a pytest module): templated sentences over a small
vocabulary, so a 2-layer BERT's MLM loss falls within a few dozen steps, and topics a sentence encoder can separate."""

import random

TOPICS = {
    "animals": (["cat", "dog", "horse", "rabbit", "parrot"], ["eats", "chases", "watches", "likes"], ["the food", "a ball", "the garden", "its toy"]),
    "space": (["rocket", "planet", "comet", "satellite", "astronaut"], ["orbits", "reaches", "passes", "circles"], ["the moon", "a star", "the sun", "mars"]),
    "cooking": (["chef", "baker", "cook", "waiter", "kitchen"], ["bakes", "serves", "cuts", "boils"], ["the bread", "a cake", "the soup", "some rice"]),
}


def sentences(count: int, seed: int = 0) -> list[tuple[str, int]]:
    """`count` (sentence, topic id) pairs."""
    rng = random.Random(seed)
    names = list(TOPICS)
    out = []
    for i in range(count):
        topic = i % len(names)
        subjects, verbs, objects = TOPICS[names[topic]]
        out.append((f"the {rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} .", topic))
    return out


def write_corpus(path, count: int = 400, seed: int = 0, blank_every: int = 7) -> int:
    """A .txt file, one sentence per line, with an empty line every `blank_every` lines; returns the blanks written."""
    lines, blanks = [], 0
    for i, (text, _) in enumerate(sentences(count, seed)):
        if blank_every and i % blank_every == blank_every - 1:
            lines.append("")
            blanks += 1
        lines.append(text)
    path.write_text("\n".join(lines) + "\n")
    return blanks
