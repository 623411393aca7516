"""diagnose scan: restore one layer at a time from aligned into tuned and audit (tiny random models)."""

from __future__ import annotations

import json

import pytest
import torch

from realignkit.common import BadInputError
from realignkit.diagnose.scan import ScanOptions, layer_parameters, run_scan, scan_layers
from realignkit.evaluation import Auditor, GenerationSettings, load_suites

SETTINGS = GenerationSettings(max_new_tokens=5, batch_size=16)


class WordJudge:
    name, version = "word", "1"

    def judge_many(self, responses, prompts=None):
        return [any(w in r.split() for w in ("w7", "w8", "w9")) for r in responses]


@pytest.fixture(scope="module")
def harmful_suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("scan") / "harm.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "prompt": f"w{i} w{i + 3}", "kind": "harmful",
                                        "category": f"c{i % 2}"}) + "\n" for i in range(16)))
    return path


def test_layer_parameters_groups_decoder_layers():
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.10.mlp.up_proj.weight",
             "model.layers.0.mlp.up_proj.weight", "lm_head.weight"]
    assert layer_parameters(names) == {0: [names[1], names[3]], 10: [names[2]]}


def test_scan_matches_an_independent_restore(tiny_family, harmful_suite, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "scan"
    scan = run_scan(tiny_family["aligned"], tiny_family["tuned"], [str(harmful_suite)], out,
                    options=ScanOptions(judge=WordJudge(), settings=SETTINGS, use_cache=False, progress=False))
    assert sorted(p.name for p in out.iterdir()) == ["realignkit.json", "scan.html", "scan.json", "scan.png"]
    assert [row["layer"] for row in scan["layers"]] == [0, 1, "lm_head", "model.embed_tokens", "model.norm"]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_family["tuned"]))
    aligned = AutoModelForCausalLM.from_pretrained(str(tiny_family["aligned"])).state_dict()
    auditor = Auditor(load_suites([str(harmful_suite)], limit=40), judge=WordJudge(), settings=SETTINGS,
                      use_cache=False)
    for row in scan["layers"]:
        model = AutoModelForCausalLM.from_pretrained(str(tiny_family["tuned"]))
        prefix = f"model.layers.{row['layer']}." if isinstance(row["layer"], int) else f"{row['layer']}."
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                if name.startswith(prefix):
                    tensor.copy_(aligned[name])
        expected = auditor.results(auditor.run_model(model, tokenizer))["overall"]["harmful_rate"]
        assert row["harmful_rate"] == pytest.approx(expected)
        assert row["harm_recovered"] == pytest.approx(scan["reference"]["tuned"]["harmful_rate"] - expected)
    tuned_model = AutoModelForCausalLM.from_pretrained(str(tiny_family["tuned"]))
    tuned_rate = auditor.results(auditor.run_model(tuned_model, tokenizer))["overall"]["harmful_rate"]
    assert scan["reference"]["tuned"]["harmful_rate"] == pytest.approx(tuned_rate)


def test_scan_bad_inputs(tiny_family, harmful_suite):
    with pytest.raises(BadInputError, match=r"layers \[5\] do not exist"):
        scan_layers(tiny_family["aligned"], tiny_family["tuned"], [str(harmful_suite)],
                    options=ScanOptions(layers=[5], judge=WordJudge(), settings=SETTINGS, use_cache=False,
                                        progress=False))
