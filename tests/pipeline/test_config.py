"""Sweep settings: typed, unknown keys refused, bad input one line (exit 2 via the CLI)."""

from pathlib import Path

import pytest

from realignkit.cli import main
from realignkit.common import BadInputError
from realignkit.pipeline.sweep_config import DEFAULT_GRIDS, build_config, load_recipe

KNOWN = set(DEFAULT_GRIDS)


@pytest.fixture()
def dirs(tmp_path):
    for name in ("aligned", "tuned"):
        (tmp_path / name).mkdir()
    return tmp_path


def _settings(dirs, **extra):
    return {"aligned": str(dirs / "aligned"), "tuned": str(dirs / "tuned"), **extra}


def test_defaults_and_grid_override(dirs):
    config = build_config(_settings(dirs, methods=["interpolate", "ties"], grids={"ties": {"density": [0.3]}}), KNOWN)
    assert config.utility_floor == 0.9
    assert config.grid_for("interpolate") == DEFAULT_GRIDS["interpolate"]
    assert config.grid_for("ties") == {"density": [0.3], "scale": DEFAULT_GRIDS["ties"]["scale"]}


def test_a_safe_lora_threshold_grid_replaces_the_default_fraction_grid(dirs):
    config = build_config(_settings(dirs, methods=["safe_lora"], grids={"safe_lora": {"threshold": [0.2, 0.3]}}),
                          KNOWN)
    assert config.grid_for("safe_lora") == {"threshold": [0.2, 0.3]}  # not crossed with the default fractions
    default = build_config(_settings(dirs, methods=["safe_lora"]), KNOWN)
    assert default.grid_for("safe_lora") == {"fraction": DEFAULT_GRIDS["safe_lora"]["fraction"]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"methods": []}, "method list is empty"),
        ({"methods": ["  "]}, "method list is empty"),
        ({"utility_floor": 0.0}, "utility floor must be in (0, 1]"),
        ({"utility_floor": 1.5}, "utility floor must be in (0, 1]"),
        ({"utilty_floor": 0.5}, "did you mean 'utility_floor'"),
        ({"methods": ["interpolat"]}, "did you mean 'interpolate'"),
        ({"methods": ["interpolate"], "grids": {"ties": {"density": [0.1]}}}, "not in the method list"),
        ({"limit": 0}, "must be >= 1"),
    ],
)
def test_bad_settings_are_one_line_errors(dirs, extra, message):
    with pytest.raises(BadInputError) as exc:
        build_config(_settings(dirs, **extra), KNOWN)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_model_dir(dirs):
    with pytest.raises(BadInputError, match="--tuned .* does not exist"):
        build_config({"aligned": str(dirs / "aligned"), "tuned": str(dirs / "nope")}, KNOWN)


def test_recipe_paths_are_relative_to_the_recipe(dirs):
    recipe = dirs / "recipe.yaml"
    recipe.write_text("aligned: aligned\ntuned: tuned\nutility_floor: 0.8\nmethods: [interpolate]\n")
    config = build_config(load_recipe(recipe), KNOWN)
    assert config.aligned == dirs / "aligned" and config.utility_floor == 0.8


def test_recipe_unknown_key_is_refused(dirs):
    recipe = dirs / "recipe.yaml"
    recipe.write_text("aligned: aligned\ntuned: tuned\nmethod: [interpolate]\n")
    with pytest.raises(BadInputError, match="did you mean 'methods'"):
        build_config(load_recipe(recipe), KNOWN)


def test_fingerprint_changes_with_results_relevant_settings_only(dirs):
    a = build_config(_settings(dirs, methods=["interpolate"]), KNOWN)
    b = build_config(_settings(dirs, methods=["interpolate"], keep_candidates=True), KNOWN)
    c = build_config(_settings(dirs, methods=["interpolate"], utility_floor=0.8), KNOWN)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--methods", ","], "method list is empty"),
        (["--utility-floor", "0"], "utility floor must be in (0, 1]"),
        (["--utility-floor", "1.01"], "utility floor must be in (0, 1]"),
        (["--methods", "antidote"], "none of the methods ['antidote'] can run"),
        (["--methods", "interpolate", "--grid", "interpolate.alpah=0.5"], "did you mean 'alpha'"),
        (["--methods", "interpolate", "--grid", "interpolate.alpha=1.0"], "equals a reference model"),
        (["--calibration", "antidote"], "expected KEY=VALUE"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(dirs, capsys, flags, message):
    out = dirs / "out"
    code = main(["sweep", "--aligned", str(dirs / "aligned"), "--tuned", str(dirs / "tuned"), *flags, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (dirs / "out.partial").exists()


def test_cli_recipe_with_flag_override_is_validated(dirs, capsys):
    recipe = dirs / "recipe.yaml"
    recipe.write_text("aligned: aligned\ntuned: tuned\nutility_floor: 2.0\nmethods: [interpolate]\n")
    out = dirs / "out"
    assert main(["sweep", "--config", str(recipe), "--out", str(out)]) == 2
    assert "utility floor must be in (0, 1]" in capsys.readouterr().err
    # A flag overrides the recipe's bad value; the next problem (no suites, no lab) is then reported.
    assert main(["sweep", "--config", str(recipe), "--utility-floor", "0.8", "--out", str(out)]) == 2
    assert "no --suite given" in capsys.readouterr().err
    assert not out.exists()


def test_output_inside_an_input_is_refused(dirs, capsys):
    out = dirs / "tuned" / "sweep"
    code = main(["sweep", "--aligned", str(dirs / "aligned"), "--tuned", str(dirs / "tuned"), "--out", str(out)])
    assert code == 2 and "overlaps input" in capsys.readouterr().err
    assert not out.exists()


# --- Recipe paths: one rule (realignkit.common.paths.resolve_recipe_path) for sweep and repair recipes ------------


def test_resolve_recipe_path_rule(tmp_path, monkeypatch):
    from realignkit.common.paths import resolve_recipe_path

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    recipe_dir = tmp_path / "recipes"
    assert resolve_recipe_path("~/m", recipe_dir) == home / "m"  # `~` first, never joined to the recipe dir
    assert resolve_recipe_path("/abs/m", recipe_dir) == Path("/abs/m")
    assert resolve_recipe_path("sub/m", recipe_dir) == recipe_dir / "sub" / "m"
    assert resolve_recipe_path("m", "recipes") == recipe_dir / "m"  # a relative recipe dir is made absolute


def _home_with_models(tmp_path, monkeypatch):
    home = tmp_path / "home"
    for name in ("aligned", "tuned"):
        (home / "models" / name).mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


def test_sweep_recipe_tilde_model_path_resolves_under_home(tmp_path, monkeypatch):
    home = _home_with_models(tmp_path, monkeypatch)
    recipe_dir = tmp_path / "project"
    recipe_dir.mkdir()
    recipe = recipe_dir / "recipe.yaml"
    recipe.write_text("aligned: ~/models/aligned\ntuned: ~/models/tuned\nmethods: [interpolate]\n")
    config = build_config(load_recipe(recipe), KNOWN)
    assert config.aligned == (home / "models" / "aligned").resolve()
    assert config.tuned == (home / "models" / "tuned").resolve()


def test_sweep_recipe_relative_calibration_is_against_the_recipe_not_the_cwd(dirs, tmp_path_factory, monkeypatch):
    (dirs / "data").mkdir()
    (dirs / "data" / "harmful.jsonl").write_text('{"prompt": "x"}\n')
    recipe = dirs / "recipe.yaml"
    recipe.write_text(
        "aligned: aligned\ntuned: tuned\nmethods: [interpolate, antidote]\ncalibration: {antidote: data/harmful.jsonl}\n"
    )
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    config = build_config(load_recipe(recipe), KNOWN)
    assert config.calibration == {"antidote": (dirs / "data" / "harmful.jsonl").resolve()}


def test_sweep_recipe_tilde_calibration_resolves_under_home(dirs, tmp_path, monkeypatch):
    home = _home_with_models(tmp_path, monkeypatch)
    (home / "harmful.jsonl").write_text('{"prompt": "x"}\n')
    recipe = dirs / "recipe.yaml"
    recipe.write_text("aligned: aligned\ntuned: tuned\nmethods: [antidote]\ncalibration: {antidote: ~/harmful.jsonl}\n")
    assert build_config(load_recipe(recipe), KNOWN).calibration == {"antidote": (home / "harmful.jsonl").resolve()}


def test_sweep_flags_expand_tilde_and_stay_relative_to_the_cwd(tmp_path, monkeypatch):
    home = _home_with_models(tmp_path, monkeypatch)
    monkeypatch.chdir(home / "models")
    config = build_config({"aligned": "~/models/aligned", "tuned": "tuned"}, KNOWN)
    assert config.aligned == (home / "models" / "aligned").resolve()
    assert config.tuned == (home / "models" / "tuned").resolve()


@pytest.mark.parametrize("value", ["~/models/aligned", "models/aligned", "ABSOLUTE"])
def test_sweep_and_repair_recipes_resolve_paths_identically(tmp_path, monkeypatch, value):
    from realignkit.methods.recipe import load_recipe as load_repair_recipe

    _home_with_models(tmp_path, monkeypatch)
    value = str(tmp_path / "abs" / "aligned") if value == "ABSOLUTE" else value
    (tmp_path / "project").mkdir()
    # `models/aligned` could also be a hub id (org/name): a directory by that name next to the recipe makes it a path
    (tmp_path / "project" / "models" / "aligned").mkdir(parents=True)
    sweep = tmp_path / "project" / "sweep.yaml"
    repair = tmp_path / "project" / "repair.yaml"
    sweep.write_text(f"aligned: {value}\ncalibration: {{antidote: {value}}}\n")
    repair.write_text(f"method: interpolate\nmodels: {{aligned: {value}}}\ncalibration: {value}\n")
    monkeypatch.chdir(tmp_path / "home")
    settings, recipe = load_recipe(sweep), load_repair_recipe(repair)
    assert settings["aligned"] == recipe.models.aligned == settings["calibration"]["antidote"] == recipe.calibration
    assert Path(recipe.calibration).is_absolute()


def test_sweep_key_that_is_not_a_mapping_is_a_one_line_error(tmp_path):
    from realignkit.common import BadInputError
    from realignkit.pipeline.sweep_config import load_recipe

    recipe = tmp_path / "sweep.yaml"
    recipe.write_text("sweep: [interpolate]\n")
    with pytest.raises(BadInputError, match="'sweep' must be a mapping"):
        load_recipe(recipe)
