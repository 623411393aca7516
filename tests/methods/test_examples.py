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
