"""The recipes shipped in examples/ parse, name a registered method and valid parameters."""

from pathlib import Path

import pytest

from realignkit.methods.recipe import load_recipe
from realignkit.methods.registry import get_method

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("repair_*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_recipe_is_valid(path):
    recipe = load_recipe(path)
    spec = get_method(recipe.method)
    spec.parse_params(recipe.parameters)
    assert recipe.models.aligned and recipe.models.tuned and recipe.out
    assert Path(recipe.models.aligned).is_absolute()


MERGEKIT_EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("mergekit_*.yml"))


@pytest.mark.parametrize("path", MERGEKIT_EXAMPLES, ids=lambda p: p.name)
def test_mergekit_example_is_a_recipe_realignkit_runs(path):
    import yaml

    from realignkit.methods.mergekit_recipe import is_mergekit_recipe, parse_mergekit_config

    data = yaml.safe_load(path.read_text())
    assert is_mergekit_recipe(data)
    config = parse_mergekit_config(data, str(path))
    assert config.base_model and len(config.models) == 2 and not config.warnings
    get_method(config.mapping.method)


def test_sweep_example_is_a_valid_sweep_recipe(tmp_path):
    """The example's paths are relative to the recipe: a lab built next to examples/ is found."""
    import shutil

    from realignkit.methods.registry import method_names
    from realignkit.pipeline.sweep_config import build_config
    from realignkit.pipeline.sweep_config import load_recipe as load_sweep_recipe

    source = Path(__file__).resolve().parents[2] / "examples" / "sweep_smollm2_harmful_mix.yaml"
    recipe = tmp_path / "examples" / source.name
    recipe.parent.mkdir()
    shutil.copy(source, recipe)
    lab = tmp_path / "lab-smollm2"
    for model in ("aligned", "harmful-mix-0.1-lora", "base"):
        (lab / model).mkdir(parents=True)
    (lab / "calibration").mkdir()
    for name in ("antidote", "somf"):
        (lab / "calibration" / f"{name}.jsonl").write_text("{}\n")
    config = build_config(load_sweep_recipe(recipe), known_methods=set(method_names()))
    assert Path(config.aligned).resolve() == (lab / "aligned").resolve()
    assert config.grids["interpolate"]["alpha"][:3] == [0.1, 0.12, 0.14] and config.limit == 160
    assert config.grids["safe_lora"] == {"fraction": [0.5, 0.75, 0.9, 1.0]}
