"""Repair recipes resolve paths by the shared recipe-path rule: `~` first, absolute stays, relative is against
the recipe file's directory (made absolute, so a later change of working directory does not move them)."""

from pathlib import Path

from realignkit.methods.recipe import load_recipe

RECIPE = (
    "method: ties\n"
    "models: {aligned: models/aligned, tuned: [models/t1, ~/t2], unaligned: /abs/base}\n"
    "calibration: data/harmful.jsonl\n"
    "out: ~/out\n"
)


def test_repair_recipe_paths_follow_the_recipe_not_the_cwd(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    project = tmp_path / "project"
    project.mkdir()
    (project / "recipe.yaml").write_text(RECIPE)
    # `models/aligned` could also be a hub id: a directory by that name next to the recipe makes it a path.
    for name in ("aligned", "t1"):
        (project / "models" / name).mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(project / "recipe.yaml")
    assert Path(recipe.calibration) == project / "data" / "harmful.jsonl"
    assert Path(recipe.models.aligned) == project / "models" / "aligned"
    assert [Path(t) for t in recipe.models.tuned] == [project / "models" / "t1", home / "t2"]
    assert Path(recipe.models.unaligned) == Path("/abs/base")
    assert Path(recipe.out) == home / "out"


def test_repair_recipe_given_by_a_relative_path_still_resolves_after_chdir(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "recipe.yaml").write_text(RECIPE)
    (project / "models" / "aligned").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe("project/recipe.yaml")
    monkeypatch.chdir(project)  # e.g. a caller that changes directory before using the paths
    assert Path(recipe.calibration) == project / "data" / "harmful.jsonl"
    assert Path(recipe.models.aligned) == project / "models" / "aligned"
