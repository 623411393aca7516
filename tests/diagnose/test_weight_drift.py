"""diagnose: per-layer drift values against direct computation, LoRA/VLM inputs, CLI outputs and bad input."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from realignkit.cli import main
from realignkit.diagnose import ALL_MODULES, module_type, weight_drift


def _state(path):
    return load_file(str(path / "model.safetensors"))


def test_rows_match_direct_computation(tiny_family):
    rows = weight_drift(tiny_family["aligned"], tiny_family["tuned"], tiny_family["base"], progress=False)
    a, t, b = (_state(tiny_family[r]) for r in ("aligned", "tuned", "base"))
    by_key = {(r.layer, r.module): r for r in rows}
    name = "model.layers.1.self_attn.q_proj.weight"
    tau, delta = t[name] - a[name], a[name] - b[name]
    row = by_key[(1, "self_attn.q_proj")]
    assert row.tau_norm == pytest.approx(tau.norm().item(), rel=1e-5)
    assert row.relative_change == pytest.approx((tau.norm() / a[name].norm()).item(), rel=1e-5)
    assert row.cos_safety == pytest.approx(torch.nn.functional.cosine_similarity(tau.flatten(), delta.flatten(), dim=0).item(), abs=1e-5)
    layer0 = [n for n in a if n.startswith("model.layers.0.")]
    total = math.sqrt(sum(float((t[n] - a[n]).pow(2).sum()) for n in layer0))
    assert by_key[(0, ALL_MODULES)].tau_norm == pytest.approx(total, rel=1e-5)
    assert by_key[(0, ALL_MODULES)].tensors == len(layer0)
    assert by_key[(None, "embed_tokens")].layer is None


def test_cos_is_minus_one_when_tuning_undoes_alignment(tiny_family):
    rows = weight_drift(tiny_family["aligned"], tiny_family["base"], tiny_family["base"], progress=False)
    for row in rows:
        if row.tau_norm > 0:
            assert row.cos_safety == pytest.approx(-1.0, abs=1e-5)


def test_lora_tuned_only_moves_adapted_modules(tiny_family, tiny_lora_dir):
    rows = weight_drift(tiny_family["aligned"], tiny_lora_dir, progress=False)
    moved = {r.module for r in rows if r.module != ALL_MODULES and r.tau_norm > 0}
    assert moved == {"self_attn.q_proj", "self_attn.v_proj"}
    assert all(r.cos_safety is None for r in rows)


def test_vlm_named_tuned_is_matched(tiny_family, tiny_vlm_tuned_dir):
    plain = weight_drift(tiny_family["aligned"], tiny_family["tuned"], progress=False)
    vlm = weight_drift(tiny_family["aligned"], tiny_vlm_tuned_dir, progress=False)
    assert [(r.layer, r.module, round(r.tau_norm, 5)) for r in plain] == [
        (r.layer, r.module, round(r.tau_norm, 5)) for r in vlm
    ]


@pytest.mark.parametrize(
    "name,expected",
    [
        ("model.layers.3.self_attn.q_proj.weight", "self_attn.q_proj"),
        ("language_model.model.layers.3.mlp.up_proj.weight", "mlp.up_proj"),
        ("model.embed_tokens.weight", "embed_tokens"),
        ("lm_head.weight", "lm_head"),
    ],
)
def test_module_type(name, expected):
    assert module_type(name) == expected


def test_cli_writes_table_csv_json_png(capsys, tiny_family, tmp_path):
    out = tmp_path / "diag"
    code = main(["diagnose", "--aligned", str(tiny_family["aligned"]), "--tuned", str(tiny_family["tuned"]),
                 "--base", str(tiny_family["base"]), "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "cos(tau,delta)" in printed and "most changed modules" in printed
    assert (out / "diagnose.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_lines = (out / "diagnose.csv").read_text().splitlines()
    assert csv_lines[0].startswith("layer,module,tensors")
    payload = json.loads((out / "diagnose.json").read_text())
    assert len(payload["rows"]) == len(csv_lines) - 1 and payload["has_base"]
    assert json.loads((out / "realignkit.json").read_text())["command"] == "diagnose"


def test_cli_bad_input_exit_2_nothing_written(capsys, tiny_family, tmp_path):
    capsys.readouterr()
    code = main(["diagnose", "--aligned", str(tiny_family["aligned"]), "--tuned", str(tmp_path / "absent"),
                 "--out", str(tmp_path / "diag")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not exist" in err[0]
    assert not (tmp_path / "diag").exists()


def test_cli_scan_flag_runs_the_layer_scan(capsys, tiny_family, tmp_path):
    suite = tmp_path / "harm.jsonl"
    suite.write_text("".join(json.dumps({"id": str(i), "prompt": f"w{i} w{i + 3}", "kind": "harmful",
                                         "category": "c"}) + "\n" for i in range(2)))
    out = tmp_path / "scan"
    code = main(["diagnose", "--aligned", str(tiny_family["aligned"]), "--tuned", str(tiny_family["tuned"]),
                 "--scan", "--suite", str(suite), "--limit", "2", "--out", str(out), "--quiet"])
    assert code == 0
    assert {"scan.json", "scan.png", "realignkit.json"} <= {p.name for p in out.iterdir()}
    assert "layer groups" in capsys.readouterr().out
