"""The engine's self-check: perplexity of a reference text, repaired vs aligned, after every repair."""

import json
import math

import pytest
import torch

from calibration.helpers import write_jsonl
from fixtures.models import build_lora_adapter, build_tiny_llama, build_tiny_tokenizer, tiny_llama_config
from realignkit.cli import main
from realignkit.methods.engine import RepairOptions, run_repair
from realignkit.methods.self_check import SelfCheckOptions, perplexity, self_check, warning_line

# A tiny "language" in the fixture vocabulary: each sentence counts up from a start word. A tiny model learns it
# in a few hundred steps, so its perplexity on this text is low and breaking the model shows.
SENTENCES = [" ".join(f"w{(start + k) % 100}" for k in range(12)) for start in range(0, 60, 5)]
TEXT = "\n".join(SENTENCES) + "\n"


def _train_tiny(path, steps=250, seed=0):
    """A tiny Llama trained on SENTENCES (about a second on CPU), saved as an HF dir with the fixture tokenizer."""
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    build_tiny_tokenizer(path)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    model = LlamaForCausalLM(tiny_llama_config())
    batch = torch.tensor([tokenizer(s)["input_ids"] for s in SENTENCES])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("self_check")
    aligned = _train_tiny(root / "aligned")
    tuned = build_tiny_llama(root / "tuned", seed=4, from_dir=aligned, noise=0.02)
    text = root / "reference.txt"
    text.write_text(TEXT)
    calibration = write_jsonl(root / "cal.jsonl", [{"prompt": s[:11], "response": s[12:]} for s in SENTENCES])
    return {"aligned": aligned, "tuned": tuned, "text": text, "calibration": calibration}


def test_perplexity_is_exp_of_the_mean_next_token_loss(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(trained["aligned"]))
    ids = torch.tensor(AutoTokenizer.from_pretrained(str(trained["aligned"]))(SENTENCES[0])["input_ids"])
    with torch.no_grad():
        loss = model(input_ids=ids[None], labels=ids[None]).loss
    assert perplexity(model, ids) == pytest.approx(math.exp(float(loss)), rel=1e-4)
    assert perplexity(model, ids) < 3.0  # the tiny model did learn its language


def _cli(trained, out, method, *extra):
    args = ["repair", method, "--tuned", str(trained["tuned"]), "--aligned", str(trained["aligned"]),
            "--self-check-text", str(trained["text"]), "--quiet", "--out", str(out), *map(str, extra)]  # fmt: skip
    return main(args)


def test_a_broken_repair_is_flagged_with_one_warning_line_and_keeps_exit_0(trained, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "broken"
    code = _cli(trained, out, "antidote", "--calibration", trained["calibration"], "--set", "alpha=0.9",
                "--set", "targets=*_proj,lm_head")  # fmt: skip
    assert code == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    warnings = [line for line in err if "WARNING" in line]
    assert len(warnings) == 1, err
    assert warnings[0].startswith("realignkit repair: WARNING: the repaired model looks broken: perplexity ")
    check = json.loads((out / "realignkit.json").read_text())["self_check"]
    assert check["broken"] is True and check["ratio"] > 2
    assert check["ppl_reference"] < 3.0 and check["ppl_repaired"] > 2 * check["ppl_reference"]
    assert check["text"] == str(trained["text"])


def test_fail_if_broken_exits_1_but_keeps_the_output(trained, tmp_path, capsys):
    out = tmp_path / "broken"
    code = _cli(trained, out, "antidote", "--calibration", trained["calibration"], "--set", "alpha=0.9",
                "--set", "targets=*_proj,lm_head", "--fail-if-broken")  # fmt: skip
    assert code == 1 and (out / "realignkit.json").is_file()
    assert _cli(trained, tmp_path / "ok", "interpolate", "--set", "alpha=0.5", "--fail-if-broken") == 0


def test_interpolate_half_way_is_not_flagged(trained, tmp_path, capsys):
    capsys.readouterr()
    assert _cli(trained, tmp_path / "out", "interpolate", "--set", "alpha=0.5") == 0
    assert "WARNING" not in capsys.readouterr().err
    check = json.loads((tmp_path / "out" / "realignkit.json").read_text())["self_check"]
    assert check["broken"] is False and check["ratio"] < 1.5
    assert check["reference_model"] == "aligned" and check["threshold"] == 2.0


def test_ratio_is_a_parameter(trained, tmp_path, capsys):
    """A threshold below the measured ratio flags even a harmless repair."""
    capsys.readouterr()
    result = run_repair("interpolate", {"alpha": 1.0}, tuned=[trained["tuned"]], aligned=trained["aligned"],
                        out=tmp_path / "out", options=RepairOptions(show_progress=False, self_check_ratio=1e-3,
                                                                    self_check_text=trained["text"]))  # fmt: skip
    assert result.extra["self_check"]["broken"] is True and result.extra["self_check"]["threshold"] == 1e-3
    assert capsys.readouterr().err.count("WARNING") == 1


def test_no_self_check_records_that_it_was_skipped(trained, tmp_path, capsys):
    assert _cli(trained, tmp_path / "out", "interpolate", "--no-self-check") == 0
    check = json.loads((tmp_path / "out" / "realignkit.json").read_text())["self_check"]
    assert check == {"skipped": "disabled (--no-self-check)"}


@pytest.mark.parametrize(("extra", "message"), [(["--self-check-ratio", "0"], "--self-check-ratio"),
                                                 (["--self-check-text", "nowhere.txt"], "--self-check-text"),
                                                 (["--no-self-check", "--fail-if-broken"], "--fail-if-broken")])  # fmt: skip
def test_bad_self_check_options_exit_2(trained, tmp_path, capsys, extra, message):
    capsys.readouterr()
    assert _cli(trained, tmp_path / "out", "interpolate", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_builtin_text_is_skipped_for_a_toy_vocabulary(tiny_family, tmp_path):
    """The fixture tokenizer knows only w0..w99: English maps to <unk>, so the check cannot measure anything."""
    result = run_repair("interpolate", {"alpha": 0.5}, tuned=[tiny_family["tuned"]], aligned=tiny_family["aligned"],
                        out=tmp_path / "out", options=RepairOptions(show_progress=False))  # fmt: skip
    assert "unknown token" in result.extra["self_check"]["skipped"]


def test_adapter_output_is_checked_on_aligned_plus_adapter(trained, tmp_path):
    adapter = build_lora_adapter(trained["aligned"], tmp_path / "adapter", seed=5)
    result = run_repair("safe_lora", {"output": "adapter", "threshold": 0.5}, tuned=[adapter],
                        aligned=trained["aligned"], unaligned=trained["tuned"], out=tmp_path / "out",
                        options=RepairOptions(show_progress=False, self_check_text=trained["text"]))  # fmt: skip
    check = result.extra["self_check"]
    assert (tmp_path / "out" / "adapter_config.json").is_file()
    assert "skipped" not in check, check
    direct = self_check(tmp_path / "out", trained["aligned"], SelfCheckOptions(text=trained["text"]))
    assert direct["ppl_repaired"] == check["ppl_repaired"]
    # the adapter changes the model: its perplexity differs from aligned's
    assert direct["ppl_repaired"] != direct["ppl_reference"]


def test_warning_line_only_for_broken_results():
    assert (
        warning_line({"broken": False, "ppl_repaired": 3.0, "ppl_reference": 2.0, "threshold": 2.0}) is None
    )
    line = warning_line({"broken": True, "ppl_repaired": None, "ppl_reference": 2.0, "threshold": 2.0})
    assert line is not None and "perplexity inf vs 2 for aligned" in line and "\n" not in line
