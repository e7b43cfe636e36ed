"""The finetune benchmark's shared settings: every contender cuts texts at the length hfgen's recipe resolves to."""

from transformers import AutoTokenizer

from hfgen.benchmarks import finetune
from hfgen.config import load_recipe
from hfgen.pretrained import resolve_pretrained


def test_max_length_auto_resolves_to_the_recipes_quantile_of_the_benchmark_rows():
    recipe = load_recipe(finetune.RECIPE)
    assert recipe.classifier.max_length == "auto"  # the case this guards: the Trainer's tokenizer needs an int
    settings = finetune.settings_for(quick=True, threads=1)
    length, quantile = settings["max_length"], recipe.classifier.max_length_quantile
    assert isinstance(length, int) and length % 8 == 0
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(settings["model"]))
    rows = finetune.benchmark_rows(settings)[0]
    lengths = [len(ids) for ids in tokenizer(list(rows[settings["text_column"]]))["input_ids"]]
    covered = lambda cut: sum(n <= cut for n in lengths) / len(lengths)  # noqa: E731
    assert covered(length) >= quantile > covered(length - 8)  # the smallest multiple of 8 covering the quantile
    assert settings["default_max_seq_length"] == 128  # run_classification.py's default, for trainer_default only
