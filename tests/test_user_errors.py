"""Every user error through the real entry points: one message naming the file / key / column / value at fault, no
traceback, and the exit code of its kind (hfgen.errors): 2 recipe, 3 data, 4 output folder, 5 launch, 6 divergence."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hfgen.cli import finetune_main, pretrain_main

from .train.classifier_fixtures import classifier_recipe, task_data, tiny_bert  # noqa: F401 (fixtures)
from .train.conftest import tiny_images, write_recipe  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]


def _write(folder: Path, name: str, content) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _reviews_parquet_with_struct_text(folder: Path) -> Path:
    import datasets

    folder.mkdir(parents=True, exist_ok=True)
    rows = {"text": [{"title": "good", "body": "fine film"}, {"title": "bad", "body": "dull"}] * 8, "label": ["pos", "neg"] * 8}
    datasets.Dataset.from_dict(rows).to_parquet(str(folder / "reviews.parquet"))
    return folder / "reviews.parquet"


# (case, data file maker or None, overrides, exit code, pattern the message must hold)
FINETUNE_CASES = [
    ("empty csv", lambda d: _write(d, "empty.csv", ""), [], 3, r"empty.csv: the file is empty"),
    ("header-only csv", lambda d: _write(d, "header.csv", "text,label\n"), [], 3, r"header.csv: the file holds only a header row"),
    ("latin-1 csv", lambda d: _write(d, "latin.csv", "text,label\ncaf\xe9 au lait,pos\ngood,neg\n".encode("latin-1")), [], 3,
     r"latin.csv: byte 14 .* is not valid utf-8.*data.encoding"),
    ("malformed jsonl", lambda d: _write(d, "bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"text": "c", "label"\n'),
     [], 3, r"bad.jsonl: line 3 is not valid JSON"),
    ("struct text column", _reviews_parquet_with_struct_text, [], 3, r"data.text_column='text' of .*reviews.parquet.* holds structs"),
    ("missing label column", lambda d: _write(d, "nolabel.csv", "text,stars\ngood,5\nbad,1\n"), [], 3, r"data.label_column='label' not found.*'stars'"),
    ("batch_size 0", None, ["train.batch_size=0"], 2, r"train.batch_size: 0 is not allowed; it must be >= 1"),
    ("negative batch_size", None, ["train.batch_size=-4"], 2, r"train.batch_size: -4 is not allowed"),
    ("negative learning_rate", None, ["train.learning_rate=-1e-3"], 2, r"train.learning_rate: -0.001 is not allowed; it must be > 0"),
    ("zero learning_rate", None, ["train.learning_rate=0"], 2, r"train.learning_rate: 0.0 is not allowed; it must be > 0"),
    ("max_steps 0", None, ["train.max_steps=0"], 2, r"train.max_steps: 0 is not allowed; it must be >= 1"),
    ("save_every 0", None, ["train.save_every=0"], 2, r"train.save_every: 0 is not allowed"),
    ("validation_size 1.5", None, ["classifier.validation_size=1.5"], 2, r"classifier.validation_size: 1.5 is not allowed; it must be in \[0, 1\)"),
    ("eval_holdout 0", None, ["data.eval_holdout=0"], 2, r"data.eval_holdout: 0.0 is not allowed; it must be in \(0, 1\)"),
    ("warm-up longer than the run", None, ["train.max_steps=4", "train.warmup_steps=10"], 2, r"train.warmup_steps 10 is longer than the whole run"),
    ("unknown encoding", lambda d: _write(d, "ok.csv", "text,label\na,x\nb,y\n"), ["data.encoding=klingon"], 3, r"data.encoding: 'klingon' is not a known"),
    ("launch for 2 processes, 1 came up", None, ["train.num_processes=2"], 5, r"train.num_processes is 2 but 1 process"),
    ("diverging run", None, ["train.learning_rate=1e6", "train.max_steps=12", "train.log_every=2", "classifier.eval_every_epoch=false"], 6,
     r"not finite (at|after) step \d+"),
]


def _expect_user_error(main, argv, code, pattern, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == code, err
    assert "Traceback" not in err and err.count(": error: ") == 1, err  # one message (progress bars aside)
    import re

    assert re.search(pattern, err), err
    return err


@pytest.mark.parametrize("case, make_data, overrides, code, pattern", FINETUNE_CASES, ids=[c[0] for c in FINETUNE_CASES])
def test_finetune_user_errors(classifier_recipe, tmp_path, capsys, case, make_data, overrides, code, pattern):
    dataset = make_data(tmp_path / "data") if make_data else None
    recipe = classifier_recipe("single_label", dataset=dataset)
    _expect_user_error(finetune_main, ["--recipe", str(recipe), *overrides], code, pattern, capsys)


def test_yaml_alias_bomb_is_refused_quickly(tmp_path, capsys):
    import time

    levels = ['  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"  {name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    recipe = _write(tmp_path, "bomb.yaml", "method: classifier\nmodel:\n  pretrained: x\n" + "\n".join(levels) +
                    "\ndata: {dataset: x}\ntrain: {output_dir: out}\n")
    started = time.perf_counter()
    _expect_user_error(finetune_main, ["--recipe", str(recipe)], 2, r"bomb.yaml: its YAML aliases expand to more than", capsys)
    assert time.perf_counter() - started < 5


def test_each_script_refuses_the_other_kind_and_names_the_right_one(classifier_recipe, write_recipe, capsys):
    _expect_user_error(finetune_main, ["--recipe", str(write_recipe("gan"))], 2, r"method 'gan' is not trained by scripts/finetune.py.*run scripts/pretrain.py", capsys)
    _expect_user_error(pretrain_main, ["--recipe", str(classifier_recipe("single_label"))], 2,
                       r"method 'classifier' is not trained by scripts/pretrain.py.*run scripts/finetune.py", capsys)


def test_output_folder_errors(write_recipe, tmp_path, capsys):
    recipe = write_recipe("vae", "train.max_steps=2")
    pretrain_main(["--recipe", str(recipe)])
    capsys.readouterr()
    _expect_user_error(pretrain_main, ["--recipe", str(recipe)], 4, r"already holds a finished run.*train.overwrite=true", capsys)
    blocker = _write(tmp_path, "a-file", "not a folder")
    _expect_user_error(pretrain_main, ["--recipe", str(recipe), f"train.output_dir={blocker / 'out'}"], 4,
                       r"train.output_dir .*a-file/out' cannot be written", capsys)


def test_real_script_prints_one_line_and_hfgen_debug_shows_the_traceback(write_recipe, tmp_path):
    recipe = write_recipe("gan", "train.batch_size=0")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    quiet = subprocess.run([sys.executable, str(ROOT / "scripts" / "pretrain.py"), "--recipe", str(recipe)], env=env, capture_output=True, text=True)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert quiet.stderr.strip().splitlines()[-1] == f"scripts/pretrain.py: error: {recipe}: train.batch_size: 0 is not allowed; it must be >= 1"
    loud = subprocess.run([sys.executable, str(ROOT / "scripts" / "pretrain.py"), "--recipe", str(recipe)], env={**env, "HFGEN_DEBUG": "1"},
                          capture_output=True, text=True)
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "RecipeError" in loud.stderr


def test_a_csv_with_one_split_fine_tunes_and_reports_test_metrics(classifier_recipe, task_data, tmp_path):
    """The README's own example: the user's file has no test (and no validation) split."""
    import shutil

    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(task_data["single_label"] / "train.csv", folder / "my_reviews.csv")
    recipe = classifier_recipe("single_label", "train.num_epochs=1", dataset=folder / "my_reviews.csv")
    finetune_main(["--recipe", str(recipe)])
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    counts = results["data"]
    assert abs(results["eval_examples"] - 9.6) <= 2 and "eval_accuracy" in results  # 10% of 96, stratified by class
    assert "held out as 'test'" in counts["test"]["split"] and counts["validation"]["examples"] > 0
    assert counts["train"]["examples"] + counts["validation"]["examples"] + results["eval_examples"] == 96


def test_max_length_auto_fits_the_data(classifier_recipe, tmp_path):
    from hfgen.config import load_recipe
    from hfgen.data.text_classification import choose_max_length
    from hfgen.train import run

    assert choose_max_length([10] * 95 + [300] * 5, 0.95, 512) == (16, 0.05)  # 95% fit in 10 tokens: rounded up to 16
    assert choose_max_length([10] * 50 + [900] * 50, 0.95, 512) == (512, 0.5)  # long texts: the model's limit, half cut
    out = run(load_recipe(classifier_recipe("single_label", "classifier.max_length=auto", "train.num_epochs=1")))
    results = json.loads((out / "eval_results.json").read_text())
    chosen = results["data"]["max_length"]
    assert chosen["limit"] == 64 and 8 <= chosen["chosen"] <= 24 and chosen["train_share_cut"] <= 0.05  # short templated texts
    assert results["max_length"] == chosen["chosen"]
