"""`method: gan` end to end on a tiny image set: outputs, reload, conditional generation."""

import json

import pytest
import torch
from transformers import AutoModel

from hfgen.config import load_recipe
from hfgen.train import run

from .helpers import read_metrics


def test_gan_run_writes_a_loadable_model_and_its_artifacts(write_recipe, tmp_path):
    out = run(load_recipe(write_recipe("gan")))
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card and "AutoModel.from_pretrained" in card
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["final.png", "step-00000003.png", "step-00000006.png"]
    assert [p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith(".")].__len__() == 2  # keep_last
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics if "d_loss" in m] == [1, 2, 3, 4, 5, 6]
    assert all(torch.isfinite(torch.tensor([m["d_loss"], m["g_loss"]])).all() for m in metrics if "d_loss" in m)
    assert json.loads((out / "eval_results.json").read_text())["steps"] == 6
    assert (out / "recipe.yaml").is_file()

    model = AutoModel.from_pretrained(out)
    assert type(model).__name__ == "DCGANModel"
    images = model.generate(5, seed=0)
    assert images.shape == (5, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, model.generate(5, seed=0))


@pytest.mark.parametrize("loss", ["hinge"])
def test_conditional_gan_with_labels(write_recipe, loss):
    out = run(load_recipe(write_recipe("gan", "data.label_column=label", f"gan.loss={loss}")))
    model = AutoModel.from_pretrained(out)
    assert model.config.num_classes == 4
    assert model.config.id2label[3] == "br"
    a = model.generate(4, seed=0, labels=[0, 0, 0, 0])
    b = model.generate(4, seed=0, labels=[3, 3, 3, 3])
    assert not torch.equal(a, b)


def test_generate_script_writes_a_grid(write_recipe, tmp_path):
    from PIL import Image

    from hfgen.cli import generate_main

    out = run(load_recipe(write_recipe("gan", "data.label_column=label")))
    generate_main(["--model", str(out), "--num-images", "8", "--out", str(tmp_path / "grid.png"), "--labels", "tl", "3", "--nrow", "4"])
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size[0] > grid.size[1] > 28  # 4 columns x 2 rows
    with pytest.raises(SystemExit):
        generate_main(["--model", str(out), "--num-images", "8", "--out", str(tmp_path / "g.png"), "--labels", "giraffe"])


def test_bad_input_fails_before_training_naming_the_key(write_recipe, tmp_path):
    from hfgen.data import DatasetError

    with pytest.raises(DatasetError, match=r"data\.image_column='img' not found.*columns present: \['image', 'label'\]"):
        run(load_recipe(write_recipe("gan", "data.image_column=img")))
    with pytest.raises(DatasetError, match=r"data\.train_split='training': no such split.*\['train', 'test'\]"):
        run(load_recipe(write_recipe("gan", "data.train_split=training")))
    assert not (tmp_path / "out" / "checkpoints").exists()  # nothing was trained


def test_corrupt_images_in_a_folder_fail_or_are_skipped_by_the_recipe_switch(write_recipe, tmp_path):
    import numpy as np
    from PIL import Image

    from hfgen.data import DatasetError

    folder = tmp_path / "garments" / "train"
    for label in ("shirt", "boot"):
        (folder / label).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(np.full((20, 20, 3), 30 * i, dtype=np.uint8)).save(folder / label / f"{i}.png")
    (folder / "boot" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match="broken.png"):
        run(load_recipe(write_recipe("gan", f"data.dataset={folder.parent}", "data.eval_split=null")))
    out = run(load_recipe(write_recipe("gan", f"data.dataset={folder.parent}", "data.eval_split=null", "data.on_bad_image=skip", "data.convert_image_mode=true", "train.max_steps=2")))
    assert (out / "model.safetensors").is_file()


def test_pretrain_script_reports_recipe_errors_with_file_and_key(write_recipe, capsys):
    from hfgen.cli import pretrain_main

    path = write_recipe("gan")
    with pytest.raises(SystemExit) as exit_info:
        pretrain_main(["--recipe", str(path), "train.batchsize=3"])
    assert exit_info.value.code == 2
    assert f"{path}: unknown key 'train.batchsize'; did you mean 'train.batch_size'" in capsys.readouterr().err
