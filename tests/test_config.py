"""Recipes: typed loading, overrides, and errors that name the file and the key."""

import textwrap

import pytest

from hfgen.config import METHOD_SECTIONS, RecipeError, load_recipe, recipe_to_dict, save_recipe
from hfgen.train import METHODS

BASE = """
method: gan
model:
  type: hfgen-dcgan
  latent_dim: 8
data:
  dataset: fashion_mnist
train:
  output_dir: {out}
  batch_size: 4
"""


@pytest.fixture
def recipe_file(tmp_path):
    def write(text=BASE, **fmt):
        path = tmp_path / "recipe.yaml"
        path.write_text(textwrap.dedent(text).format(out=tmp_path / "out", **fmt))
        return path

    return write


def test_loads_typed_sections_with_defaults(recipe_file):
    recipe = load_recipe(recipe_file())
    assert recipe.method == "gan"
    assert recipe.model.type == "hfgen-dcgan" and recipe.model.config == {"latent_dim": 8}
    assert recipe.train.batch_size == 4 and recipe.train.learning_rate == 1e-4
    assert recipe.gan.loss == "non_saturating"  # the method's section defaults in when left out
    assert recipe.options is recipe.gan
    assert recipe.vae is None


def test_overrides_are_parsed_as_yaml(recipe_file):
    recipe = load_recipe(recipe_file(), ["train.batch_size=64", "train.learning_rate=3e-4", "model.latent_dim=16", "train.max_steps=null", "gan.loss=hinge"])
    assert recipe.train.batch_size == 64
    assert recipe.train.learning_rate == pytest.approx(3e-4)
    assert recipe.model.config["latent_dim"] == 16
    assert recipe.gan.loss == "hinge"


def test_unknown_key_names_file_and_suggests(recipe_file):
    path = recipe_file()
    with pytest.raises(RecipeError, match=r"recipe\.yaml: unknown key 'train\.batchsize'; did you mean 'train\.batch_size'"):
        load_recipe(path, ["train.batchsize=3"])


def test_unknown_model_field_is_checked_against_the_config_class(recipe_file):
    with pytest.raises(RecipeError, match=r"unknown key 'model\.latent_dimm'.*did you mean 'model\.latent_dim'"):
        load_recipe(recipe_file(), ["model.latent_dimm=3"])


def test_wrong_type_names_key_and_value(recipe_file):
    with pytest.raises(RecipeError, match=r"train\.batch_size: expected int, got 'big'"):
        load_recipe(recipe_file(), ["train.batch_size=big"])
    with pytest.raises(RecipeError, match=r"train\.mixed_precision: 'fp8' is not one of"):
        load_recipe(recipe_file(), ["train.mixed_precision=fp8"])
    with pytest.raises(RecipeError, match=r"train\.overwrite: expected bool"):
        load_recipe(recipe_file(), ["train.overwrite=3"])


def test_bare_no_in_yaml_means_the_string_no(recipe_file):
    assert load_recipe(recipe_file(), ["train.mixed_precision=no"]).train.mixed_precision == "no"


def test_int_is_accepted_for_float_but_bool_is_not_an_int(recipe_file):
    assert load_recipe(recipe_file(), ["train.learning_rate=1"]).train.learning_rate == 1.0
    with pytest.raises(RecipeError, match="expected int"):
        load_recipe(recipe_file(), ["train.batch_size=true"])


def test_missing_required_key(recipe_file):
    text = BASE.replace("  output_dir: {out}\n", "")
    with pytest.raises(RecipeError, match=r"missing required key 'train\.output_dir'"):
        load_recipe(recipe_file(text))


def test_unknown_method_and_model_type(recipe_file):
    with pytest.raises(RecipeError, match=r"unknown method 'gann'; did you mean 'gan'"):
        load_recipe(recipe_file(), ["method=gann"])
    with pytest.raises(RecipeError, match=r"unknown model type 'hfgen-dcgann'"):
        load_recipe(recipe_file(), ["model.type=hfgen-dcgann"])


def test_section_of_another_method_is_refused(recipe_file):
    with pytest.raises(RecipeError, match="section 'vae' does not apply to method 'gan'"):
        load_recipe(recipe_file(), ["vae.kl_warmup_steps=3"])


def test_missing_recipe_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [gan\n")
    with pytest.raises(RecipeError, match="bad.yaml: not valid YAML"):
        load_recipe(bad)


def test_malformed_override(recipe_file):
    with pytest.raises(RecipeError, match="not of the form key.sub=value"):
        load_recipe(recipe_file(), ["train.batch_size"])


def test_saved_recipe_round_trips(recipe_file, tmp_path):
    recipe = load_recipe(recipe_file(), ["train.batch_size=7"])
    save_recipe(recipe, tmp_path / "saved.yaml")
    again = load_recipe(tmp_path / "saved.yaml")
    assert recipe_to_dict(again) == recipe_to_dict(recipe)


def test_every_method_has_a_section_and_a_run_function():
    assert set(METHODS) == set(METHOD_SECTIONS)
