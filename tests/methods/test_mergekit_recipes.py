"""mergekit recipes run unchanged through `realignkit repair --config`: the issue's four recipes against their
formulas on tiny fp32 checkpoints, gradients/filters per layer, dtypes, MODEL+LORA, refused keys, and the
mergekit_config.yml every output carries re-run through --config giving the same tensors."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from fixtures.models import build_lora_adapter, peft_merged_state
from realignkit.cli import main

QUIET = ["--quiet", "--no-self-check"]


def run(capsys, *argv):
    capsys.readouterr()
    code = main(["repair", *map(str, argv)])
    return code, capsys.readouterr().err


def weights(path):
    return load_file(str(path / "model.safetensors"))


def write(tmp_path, text, name="recipe.yml"):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def merged(capsys, tmp_path, text, *extra):
    code, err = run(capsys, "--config", write(tmp_path, text), "--out", tmp_path / "out", *QUIET, *extra)
    assert code == 0, err
    return weights(tmp_path / "out")


@pytest.fixture(scope="module")
def family(tiny_family):
    return {role: weights(path) for role, path in tiny_family.items()}


def test_linear_two_models_weights_07_03(capsys, tiny_family, family, tmp_path):
    out = merged(capsys, tmp_path, f"""merge_method: linear
models:
  - model: {tiny_family['tuned']}
    parameters: {{weight: 0.7}}
  - model: {tiny_family['tuned2']}
    parameters: {{weight: 0.3}}
dtype: float32
""")
    for name, tensor in out.items():
        torch.testing.assert_close(tensor, 0.7 * family["tuned"][name] + 0.3 * family["tuned2"][name])


def _slerp(t, a, b):
    """Shoemake's formula on the flattened tensors, in float64."""
    a64, b64 = a.double().reshape(-1), b.double().reshape(-1)
    cos = float(torch.dot(a64 / a64.norm(), b64 / b64.norm()))
    if abs(cos) > 0.9995:
        return (1 - t) * a + t * b
    omega = math.acos(cos)
    return ((math.sin((1 - t) * omega) * a64 + math.sin(t * omega) * b64) / math.sin(omega)).reshape(a.shape).float()


def test_slerp_base_plus_two_models_t_04(capsys, tiny_family, family, tmp_path):
    out = merged(capsys, tmp_path, f"""merge_method: slerp
base_model: {tiny_family['aligned']}
models:
  - model: {tiny_family['aligned']}
  - model: {tiny_family['tuned']}
parameters: {{t: 0.4}}
dtype: float32
""")
    spherical = 0
    for name, tensor in out.items():
        expected = _slerp(0.4, family["aligned"][name], family["tuned"][name])
        torch.testing.assert_close(tensor, expected, rtol=1e-5, atol=1e-6)
        spherical += not torch.allclose(expected, torch.lerp(family["aligned"][name], family["tuned"][name], 0.4))
    assert spherical > 0  # some tensors really are on the arc, not on the chord


def test_task_arithmetic_two_tuned_06_03(capsys, tiny_family, family, tmp_path):
    out = merged(capsys, tmp_path, f"""merge_method: task_arithmetic
base_model: {tiny_family['aligned']}
models:
  - model: {tiny_family['tuned']}
    parameters: {{weight: 0.6}}
  - model: {tiny_family['tuned2']}
    parameters: {{weight: 0.3}}
dtype: float32
""")
    for name, tensor in out.items():
        base = family["aligned"][name]
        expected = base + 0.6 * (family["tuned"][name] - base) + 0.3 * (family["tuned2"][name] - base)
        torch.testing.assert_close(tensor, expected)


def _ties(base, tuned, density, weights):
    deltas = []
    for theta, weight in zip(tuned, weights, strict=True):
        tau = (theta - base).reshape(-1)
        keep = torch.zeros_like(tau)
        keep[torch.topk(tau.abs(), max(1, int(density * tau.numel()))).indices] = 1.0
        deltas.append(weight * tau * keep)
    elected = torch.where(sum(deltas) >= 0, 1.0, -1.0)
    agree = [torch.sign(d) == elected for d in deltas]
    numerator = sum(d * a for d, a in zip(deltas, agree, strict=True))
    denominator = sum(w * a.float() for w, a in zip(weights, agree, strict=True))
    return base + (numerator / torch.where(denominator == 0, 1.0, denominator)).reshape(base.shape)


def test_ties_density_04_normalize(capsys, tiny_family, family, tmp_path):
    out = merged(capsys, tmp_path, f"""merge_method: ties
base_model: {tiny_family['aligned']}
models:
  - model: {tiny_family['tuned']}
    parameters: {{weight: 1.0, density: 0.4}}
  - model: {tiny_family['tuned2']}
    parameters: {{weight: 1.0, density: 0.4}}
parameters: {{normalize: true}}
dtype: float32
""")
    for name, tensor in out.items():
        expected = _ties(family["aligned"][name], [family["tuned"][name], family["tuned2"][name]], 0.4, [1.0, 1.0])
        torch.testing.assert_close(tensor, expected)


def test_gradient_and_filter_follow_the_layer_position(capsys, tiny_family, family, tmp_path):
    """Two layers: layer 0 sits at position 0, layer 1 at 1; embeddings, final norm and lm_head at 0 (mergekit)."""
    out = merged(capsys, tmp_path, f"""merge_method: linear
models:
  - model: {tiny_family['tuned']}
    parameters:
      weight: [{{filter: self_attn, value: 0.9}}, {{value: [0.2, 0.5, 0.8]}}]
  - model: {tiny_family['tuned2']}
parameters: {{weight: 1.0, normalize: false}}
""")
    expectations = {"model.layers.0.self_attn.q_proj.weight": 0.9, "model.layers.1.self_attn.o_proj.weight": 0.9,
                    "model.layers.0.mlp.up_proj.weight": 0.2, "model.layers.1.mlp.up_proj.weight": 0.8,
                    "model.embed_tokens.weight": 0.2, "lm_head.weight": 0.2, "model.norm.weight": 0.2}
    for name, weight in expectations.items():
        torch.testing.assert_close(out[name], weight * family["tuned"][name] + family["tuned2"][name], msg=name)


def test_compute_and_output_dtypes(capsys, tiny_family, family, tmp_path):
    text = f"""merge_method: task_arithmetic
base_model: {tiny_family['aligned']}
models:
  - model: {tiny_family['tuned']}
    parameters: {{weight: 0.5}}
dtype: bfloat16
"""
    out = merged(capsys, tmp_path, text)
    name = "model.layers.0.mlp.down_proj.weight"
    assert out[name].dtype == torch.bfloat16  # no out_dtype: the compute dtype is written, as mergekit does
    base, tuned = (family[r][name].to(torch.bfloat16).float() for r in ("aligned", "tuned"))
    torch.testing.assert_close(out[name], (base + 0.5 * (tuned - base)).to(torch.bfloat16))
    assert json.loads((tmp_path / "out" / "config.json").read_text()).get("dtype", "bfloat16") == "bfloat16"
    out32 = merged(capsys, tmp_path, text.replace("dtype: bfloat16", "dtype: float32\nout_dtype: bfloat16"), "--force")
    assert out32[name].dtype == torch.bfloat16


def test_lora_models_as_in_mergekit(capsys, tiny_family, family, tmp_path, monkeypatch):
    monkeypatch.setenv("REALIGNKIT_CACHE_DIR", str(tmp_path / "cache"))
    adapter = build_lora_adapter(tiny_family["aligned"], tmp_path / "lora")
    lora_tuned = peft_merged_state(tiny_family["aligned"], adapter)
    out = merged(capsys, tmp_path, f"""merge_method: task_arithmetic
base_model: {tiny_family['aligned']}
models:
  - model: {tiny_family['aligned']}+{adapter}
    parameters: {{weight: 0.5}}
""")
    name = "model.layers.0.self_attn.q_proj.weight"
    base = family["aligned"][name]
    torch.testing.assert_close(out[name], base + 0.5 * (lora_tuned[name] - base), rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "cache" / "lora-merged").exists()  # on its own base: the adapter is used as it is
    # a LoRA on top of another model than the base: folded in once, into the cache
    out = merged(capsys, tmp_path, f"""merge_method: linear
models:
  - model: {tiny_family['aligned']}+{adapter}
    parameters: {{weight: 1.0}}
  - model: {tiny_family['tuned']}
    parameters: {{weight: 1.0}}
""", "--force")
    torch.testing.assert_close(out[name], (lora_tuned[name] + family["tuned"][name]) / 2, rtol=1e-5, atol=1e-6)
    assert len(list((tmp_path / "cache" / "lora-merged").iterdir())) == 1


@pytest.mark.parametrize(("snippet", "fragment"), [
    ("slices:\n  - sources: [{model: A, layer_range: [0, 2]}]\n", "'slices' is not supported"),
    ("tokenizer_source: union\n", "'tokenizer_source: union' is not supported"),
    ("chat_template: chatml\n", "'chat_template' is not supported"),
    ("modules: {}\n", "'modules' is not supported"),
    ("merge_mehtod_x: 1\n", "unknown key 'merge_mehtod_x'"),
])
def test_unsupported_keys_are_one_line_and_nothing_is_written(capsys, tiny_family, tmp_path, snippet, fragment):
    text = (f"merge_method: linear\nmodels:\n  - model: {tiny_family['tuned']}\n    parameters: {{weight: 1.0}}\n"
            + snippet)
    _refused(capsys, tmp_path, text, fragment)


@pytest.mark.parametrize(("method", "fragment"), [("passthrough", "'merge_method: passthrough' is not supported"),
                                                  ("model_stock", "'merge_method: model_stock' is not supported"),
                                                  ("tiess", "unknown merge_method 'tiess' (did you mean 'ties'?)")])
def test_unsupported_methods(capsys, tiny_family, tmp_path, method, fragment):
    text = f"merge_method: {method}\nbase_model: {tiny_family['aligned']}\nmodels:\n  - model: {tiny_family['tuned']}\n"
    _refused(capsys, tmp_path, text, fragment)


def test_bad_recipes_name_the_problem(capsys, tiny_family, tmp_path):
    _refused(capsys, tmp_path, f"merge_method: ties\nmodels:\n  - model: {tiny_family['tuned']}\n",
             "needs a base_model")
    _refused(capsys, tmp_path, f"merge_method: ties\nbase_model: {tiny_family['aligned']}\nmodels:\n"
                               f"  - model: {tiny_family['tuned']}\n", "no 'weight' for model")
    _refused(capsys, tmp_path, f"merge_method: ties\nbase_model: {tiny_family['aligned']}\nmodels:\n"
                               f"  - model: {tiny_family['tuned']}\n    parameters: {{weight: 1, densty: 0.3}}\n",
             "unknown parameter 'densty' (did you mean 'density'?)")
    _refused(capsys, tmp_path, f"merge_method: slerp\nbase_model: {tiny_family['aligned']}\nmodels:\n"
                               f"  - model: {tiny_family['tuned']}\n  - model: {tiny_family['tuned2']}\n"
                               "parameters: {t: 0.5}\n", "merges exactly 2 models")
    _refused(capsys, tmp_path, "merge_method: linear\nmodels:\n  - model: not-here/nor-on-hub\n"
                               "    parameters: {weight: 1}\n", "'not-here/nor-on-hub': not in the local hub cache")


def _refused(capsys, tmp_path, text, fragment):
    code, err = run(capsys, "--config", write(tmp_path, text), "--out", tmp_path / "out", *QUIET)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_parameters_mergekit_ignores_are_a_warning(capsys, tiny_family, tmp_path):
    code, err = run(capsys, "--config", write(tmp_path, f"""merge_method: linear
models:
  - model: {tiny_family['tuned']}
    parameters: {{weight: 1.0, density: 0.5}}
"""), "--out", tmp_path / "out", *QUIET)
    assert code == 0 and "warning: models[0] parameter 'density' is not used by this merge method" in err


@pytest.mark.parametrize(("method", "sets", "n_tuned"), [
    ("ties", ["density=0.3", "weights=0.7,0.5", "scale=0.9"], 2),
    ("task_arithmetic", ["weights=0.6,0.3", "scale=0.8"], 2),
    ("interpolate", ["alpha=0.3"], 1),
    ("slerp", ["t=0.4"], 1),
    ("resta", ["beta=0.5"], 1),
    ("dare_ties", ["density=0.5", "weights=1.0,0.5"], 2),
])
def test_every_output_has_a_card_and_its_mergekit_recipe_reproduces_it(capsys, tiny_family, tmp_path, method, sets,
                                                                      n_tuned):
    tuned = [tiny_family["tuned"], tiny_family["tuned2"]][:n_tuned]
    argv = [method, "--aligned", tiny_family["aligned"], "--base", tiny_family["base"], "--out", tmp_path / "ours"]
    argv += [arg for t in tuned for arg in ("--tuned", t)] + [arg for s in sets for arg in ("--set", s)]
    code, err = run(capsys, *argv, *QUIET)
    assert code == 0, err
    card = (tmp_path / "ours" / "README.md").read_text()
    assert card.startswith("---\n") and "## Parents" in card and str(tiny_family["aligned"]) in card
    assert "Paper" in card and "realignkit 0.1.0" in card
    recipe = tmp_path / "ours" / "mergekit_config.yml"
    code, err = run(capsys, "--config", recipe, "--out", tmp_path / "again", *QUIET)
    assert code == 0, err
    ours, again = weights(tmp_path / "ours"), weights(tmp_path / "again")
    assert set(ours) == set(again)
    for name in ours:
        torch.testing.assert_close(again[name], ours[name], rtol=1e-5, atol=1e-6, msg=name)


def test_methods_without_a_mergekit_equivalent_get_a_card_only(capsys, tiny_family, tmp_path):
    code, err = run(capsys, "dare", "--aligned", tiny_family["aligned"], "--tuned", tiny_family["tuned"],
                    "--out", tmp_path / "out", *QUIET)
    assert code == 0, err
    assert (tmp_path / "out" / "README.md").is_file() and not (tmp_path / "out" / "mergekit_config.yml").exists()
    assert "Yu et al." in (tmp_path / "out" / "README.md").read_text()


def test_a_mergekit_run_writes_its_recipe_pinned(capsys, tiny_family, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(tiny_family["tuned"].parent)
    text = """merge_method: ties
base_model: models/aligned
models:
  - model: models/tuned
    parameters: {weight: 1.0, density: [0.3, 0.6]}
  - model: models/tuned2
    parameters: {weight: 0.5, density: 0.5}
"""
    first = merged(capsys, tmp_path, text)
    saved = (tmp_path / "out" / "mergekit_config.yml").read_text()
    assert f"base_model: {tmp_path / 'models' / 'aligned'}" in saved and "density:\n    - 0.3\n    - 0.6" in saved
    card = (tmp_path / "out" / "README.md").read_text()
    assert "ties (mergekit recipe)" in card and "Yadav et al." in card
    code, err = run(capsys, "--config", tmp_path / "out" / "mergekit_config.yml", "--out", tmp_path / "again", *QUIET)
    assert code == 0, err
    again = weights(tmp_path / "again")
    assert all(torch.equal(first[n], again[n]) for n in first)
