"""The sweep outside the organism: user JSONL suites (split by hash), a LoRA adapter as `tuned`, every
weight-only method's default grid, YAML recipe through the CLI."""

import json

from realignkit.cli import main

WORDS = [f"w{i}" for i in range(30)]


def write_suite(path):
    rows = []
    for i in range(8):  # placeholder intents only: no real harmful content
        rows.append({"id": f"h{i}", "prompt": f"w1 w2 w{i + 3} [fraud scheme {i}]", "kind": "harmful"})
        rows.append({"id": f"u{i}", "prompt": f"w4 w{i + 5}", "kind": "utility", "answer": f"w{i + 5}"})
        rows.append({"id": f"o{i}", "prompt": f"w6 w{i + 7}", "kind": "over_refusal"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_recipe_sweep_with_lora_tuned_and_user_suite(tiny_family, tiny_lora_dir, tmp_path, capsys):
    suite = write_suite(tmp_path / "suite.jsonl")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"aligned: {tiny_family['aligned']}\ntuned: {tiny_lora_dir}\nbase: {tiny_family['base']}\n"
        f"suites: [{suite}]\nmax_new_tokens: 4\n"
        "methods: [interpolate, task_arithmetic, slerp, dare, ties, resta, safe_lora, antidote]\n"
        "grids: {ties: {density: [0.5], scale: [1.0]}, safe_lora: {threshold: [0.5]}}\n"
    )
    out = tmp_path / "run"
    assert main(["sweep", "--config", str(recipe), "--no-progress", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["splits"]["selection"] == summary["splits"]["test"] == {"harmful": 4, "utility": 4, "over_refusal": 4}
    methods = {c["method"] for c in summary["candidates"]}
    assert methods == {"interpolate", "task_arithmetic", "slerp", "dare", "ties", "resta", "safe_lora"}
    # task_arithmetic(scale=0.5) is interpolate(alpha=0.5) with one tuned model: skipped, not re-evaluated.
    assert any(s["label"] == "task_arithmetic(scale=0.5)" and "interpolate(alpha=0.5)" in s["reason"]
               for s in summary["skipped"])
    assert any(n.startswith("antidote: skipped, no calibration data") for n in summary["notes"])
    assert summary["winner"]["id"] is not None and "test" in summary["winner"]
    assert (out / "winner" / "config.json").is_file()  # a full model even though tuned is a LoRA adapter
    assert "winner:" in stdout
    manifest = json.loads((out / "realignkit.json").read_text())
    assert manifest["command"] == "sweep" and manifest["inputs"]["tuned"]["fingerprint"].startswith("sha256:")
