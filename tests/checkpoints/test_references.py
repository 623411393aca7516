"""Model references: `org/name`, `org/name@revision` and `MODEL+LORA`, resolved through a Hugging Face hub cache
laid out on disk as huggingface_hub lays it out (HF_HOME, HF_HUB_OFFLINE=1: nothing touches the network)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from fixtures.fake_hub import build_hub_cache
from fixtures.models import build_lora_adapter, peft_merged_state
from realignkit.checkpoints.lora_merge import model_and_base
from realignkit.checkpoints.references import hub_origin, resolve_reference
from realignkit.cli import main
from realignkit.common import BadInputError

COMMIT_V2 = "c" * 40


@pytest.fixture
def hub(tiny_family, tmp_path, monkeypatch):
    """org/aligned (main), org/tuned (main, and tag v2 = tuned2), org/lora (an adapter on aligned)."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("REALIGNKIT_CACHE_DIR", str(tmp_path / "rk-cache"))
    cache = home / "hub"
    adapter = build_lora_adapter(tiny_family["aligned"], tmp_path / "lora-src")
    return {
        "aligned": build_hub_cache(cache, "org/aligned", tiny_family["aligned"]),
        "tuned": build_hub_cache(cache, "org/tuned", tiny_family["tuned"]),
        "tuned_v2": build_hub_cache(cache, "org/tuned", tiny_family["tuned2"], revision="v2", commit=COMMIT_V2),
        "lora": build_hub_cache(cache, "org/lora", adapter),
        "adapter_src": adapter,
    }


def test_hub_ids_and_revisions_resolve_from_the_cache(hub):
    found = resolve_reference("org/tuned", role="--tuned")
    assert found.model.path == hub["tuned"] and found.model.repo_id == "org/tuned"
    assert found.model.commit == hub["tuned"].name
    tag = resolve_reference("org/tuned@v2", role="--tuned")
    assert tag.model.path == hub["tuned_v2"] and tag.model.revision == "v2" and tag.model.commit == COMMIT_V2
    assert resolve_reference(f"org/tuned@{COMMIT_V2}", role="--tuned").model.path == hub["tuned_v2"]
    both = resolve_reference("org/aligned+org/lora", role="--tuned")
    assert both.model.path == hub["aligned"] and both.lora.path == hub["lora"]
    assert hub_origin(hub["tuned"]) == ("org/tuned", hub["tuned"].name)


@pytest.mark.parametrize(("reference", "fragment"), [
    ("org/missing", "'org/missing': not in the local hub cache"),
    ("org/tuned@nope", "hf download org/tuned --revision nope"),
    ("./no/such/dir", "does not exist"),
    ("org/aligned+org/tuned", "is not a PEFT LoRA adapter"),
    ("a+b+c", "expected MODEL or MODEL+LORA"),
])
def test_bad_references_are_one_line(hub, reference, fragment):
    with pytest.raises(BadInputError, match=None) as info:
        resolve_reference(reference, role="--tuned")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def run(capsys, *argv):
    capsys.readouterr()
    code = main([*map(str, argv)])
    return code, capsys.readouterr().err


def test_repair_with_hub_ids_records_them_and_pins_its_mergekit_recipe(capsys, hub, tiny_family, tmp_path):
    code, err = run(capsys, "repair", "task_arithmetic", "--aligned", "org/aligned", "--tuned", "org/tuned@v2",
                    "--tuned", "org/aligned+org/lora", "--set", "weights=0.5,1.0", "--out", tmp_path / "out",
                    "--quiet", "--no-self-check")
    assert code == 0, err
    out = load_file(str(tmp_path / "out" / "model.safetensors"))
    aligned, tuned2 = (load_file(str(tiny_family[r] / "model.safetensors")) for r in ("aligned", "tuned2"))
    lora = peft_merged_state(tiny_family["aligned"], hub["adapter_src"])
    name = "model.layers.1.self_attn.v_proj.weight"
    expected = aligned[name] + 0.5 * (tuned2[name] - aligned[name]) + (lora[name] - aligned[name])
    torch.testing.assert_close(out[name], expected, rtol=1e-5, atol=1e-6)
    manifest = json.loads((tmp_path / "out" / "realignkit.json").read_text())
    assert manifest["references"]["tuned[0]"]["model"]["commit"] == COMMIT_V2
    assert manifest["references"]["tuned[1]"]["lora"]["repo_id"] == "org/lora"
    card = (tmp_path / "out" / "README.md").read_text()
    assert "base_model:\n- org/aligned\n- org/lora\n- org/tuned" in card
    assert "[org/tuned](https://huggingface.co/org/tuned)" in card and "v2 (commit cccccccccccc)" in card
    recipe = (tmp_path / "out" / "mergekit_config.yml").read_text()
    assert f"org/tuned@{COMMIT_V2}" in recipe and f"org/aligned@{hub['aligned'].name}+org/lora@" in recipe
    code, err = run(capsys, "repair", "--config", tmp_path / "out" / "mergekit_config.yml", "--out",
                    tmp_path / "again", "--quiet", "--no-self-check")
    assert code == 0, err
    again = load_file(str(tmp_path / "again" / "model.safetensors"))
    for tensor_name in out:
        torch.testing.assert_close(again[tensor_name], out[tensor_name], rtol=1e-5, atol=1e-6)


def test_a_missing_hub_model_writes_nothing(capsys, hub, tmp_path):
    code, err = run(capsys, "repair", "interpolate", "--aligned", "org/aligned", "--tuned", "org/gone", "--out",
                    tmp_path / "out", "--quiet")
    assert code == 2 and "'org/gone': not in the local hub cache" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_diagnose_and_sweep_settings_take_references(capsys, hub, tmp_path):
    code, err = run(capsys, "diagnose", "--aligned", "org/aligned", "--tuned", "org/aligned+org/lora",
                    "--out", tmp_path / "diag", "--quiet")
    assert code == 0, err
    rows = json.loads((tmp_path / "diag" / "diagnose.json").read_text())
    assert rows  # the adapter's modules moved
    from realignkit.pipeline.sweep_config import build_config

    config = build_config({"aligned": "org/aligned", "tuned": "org/aligned+org/lora", "base": "org/tuned@v2"})
    assert config.aligned == hub["aligned"].resolve() and config.tuned == hub["lora"].resolve()
    assert config.base == hub["tuned_v2"].resolve()


def test_audit_takes_model_plus_lora_as_adapter_and_base(hub):
    assert model_and_base("org/aligned+org/lora", None, "MODEL", "--aligned") == (str(hub["lora"]), str(hub["aligned"]))
    assert model_and_base("org/tuned", None, "MODEL", "--aligned") == (str(hub["tuned"]), None)
    with pytest.raises(BadInputError, match="already names the LoRA's base model; drop --aligned"):
        model_and_base("org/aligned+org/lora", "org/aligned", "MODEL", "--aligned")
