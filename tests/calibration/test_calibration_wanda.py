import pytest
import torch

from realignkit.calibration import (
    PromptResponse,
    collect_input_norms,
    linear_modules,
    load_input_norms,
    save_input_norms,
    select_targets,
)
from realignkit.calibration.chat import encode_examples
from realignkit.calibration.models import load_calibration_model, load_tokenizer
from realignkit.calibration.wanda import ForwardPasses
from realignkit.common.errors import BadInputError

EXAMPLES = [
    PromptResponse("w1 w2 w3", "w4 w5"),
    PromptResponse("w7 w8", "w9 w10 w11 w12 w13"),
    PromptResponse("w20", "w21 w22 w23"),
]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_family):
    model, is_lora = load_calibration_model(tiny_family["tuned"], None)
    assert not is_lora
    return model, load_tokenizer(tiny_family["tuned"])


def test_norms_match_direct_computation(model_and_tokenizer):
    """Layer 0's q_proj sees input_layernorm(embeddings): recompute ‖X_j‖₂ by hand, one unpadded example at a time."""
    model, tokenizer = model_and_tokenizer
    norms = collect_input_norms(model, tokenizer, EXAMPLES, ["model.layers.0.self_attn.q_proj"],
                                ForwardPasses(batch_size=2))
    squares = torch.zeros(model.config.hidden_size, dtype=torch.float64)
    with torch.no_grad():
        for encoded in encode_examples(tokenizer, EXAMPLES):
            embeds = model.model.embed_tokens(torch.tensor([encoded.input_ids]))  # [1, seq, hidden]
            x = model.model.layers[0].input_layernorm(embeds)[0]  # [seq, hidden]
            squares += x.double().pow(2).sum(dim=0)
    expected = squares.sqrt().float()
    got = norms["model.layers.0.self_attn.q_proj"]
    assert got.shape == (model.config.hidden_size,)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_batching_and_layer_streaming_do_not_change_norms(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    names = select_targets(linear_modules(model), "q_proj,v_proj,down_proj")
    one = collect_input_norms(model, tokenizer, EXAMPLES, names, ForwardPasses(batch_size=1))
    padded = collect_input_norms(model, tokenizer, EXAMPLES, names, ForwardPasses(batch_size=3))
    streamed = collect_input_norms(model, tokenizer, EXAMPLES, names, ForwardPasses(batch_size=2, stream_layers=True))
    assert set(one) == set(names) and len(names) == 6
    for name in names:
        torch.testing.assert_close(padded[name], one[name], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(streamed[name], one[name], rtol=1e-5, atol=1e-6)
        assert one[name].shape == (linear_modules(model)[name].in_features,)


def test_save_and_load_roundtrip(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    norms = collect_input_norms(model, tokenizer, EXAMPLES[:1], ["model.layers.1.mlp.down_proj"])
    path = save_input_norms(norms, tmp_path)
    assert path.name == "calibration_stats.safetensors"
    loaded = load_input_norms(tmp_path)
    assert torch.equal(loaded["model.layers.1.mlp.down_proj"], norms["model.layers.1.mlp.down_proj"])


def test_lora_pieces_get_their_own_statistics(tiny_family, tiny_lora_dir):
    model, is_lora = load_calibration_model(tiny_lora_dir, tiny_family["aligned"])
    assert is_lora
    tokenizer = load_tokenizer(tiny_family["aligned"])
    base = "model.layers.0.self_attn.q_proj"
    norms = collect_input_norms(model, tokenizer, EXAMPLES, [base, f"{base}.lora_A", f"{base}.lora_B"])
    rank = linear_modules(model)[f"{base}.lora_B"].in_features
    assert norms[f"{base}.lora_B"].shape == (rank,)
    torch.testing.assert_close(norms[f"{base}.lora_A"], norms[base])  # lora_A reads the layer's own input
    assert float(norms[f"{base}.lora_B"].min()) > 0


def test_target_glob_matching_nothing(model_and_tokenizer):
    model, _ = model_and_tokenizer
    with pytest.raises(BadInputError, match="'\\*qkv_proj' matches no linear module"):
        select_targets(linear_modules(model), "q_proj,qkv_proj")


def test_tokenizer_without_chat_template(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    saved = tokenizer.chat_template
    tokenizer.chat_template = None
    try:
        with pytest.raises(BadInputError, match="no chat template"):
            collect_input_norms(model, tokenizer, EXAMPLES, ["model.layers.0.self_attn.q_proj"])
    finally:
        tokenizer.chat_template = saved


def test_model_the_calibration_cannot_load(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BadInputError, match="cannot load"):
        load_calibration_model(tmp_path, None)


def test_lora_without_aligned(tiny_lora_dir):
    with pytest.raises(BadInputError, match="needs --aligned"):
        load_calibration_model(tiny_lora_dir, None)


def test_model_the_calibration_cannot_run_on(model_and_tokenizer):
    """A model whose vocabulary is smaller than the tokenizer's: the forward pass fails, reported as bad input."""
    from transformers import LlamaForCausalLM

    from fixtures.models import tiny_llama_config

    _, tokenizer = model_and_tokenizer
    small = LlamaForCausalLM(tiny_llama_config(vocab_size=8)).eval()
    with pytest.raises(BadInputError, match="calibration forward pass failed"):
        collect_input_norms(small, tokenizer, EXAMPLES, ["model.layers.0.self_attn.q_proj"])


def test_outlier_features_are_those_above_k_times_the_median_norm():
    from realignkit.calibration import outlier_features

    norm = torch.tensor([1.0, 2.0, 1.5, 50.0, 1.0, 25.0, 0.5])  # median 1.5
    assert outlier_features(norm, 10).tolist() == [3, 5]
    assert outlier_features(norm, 20).tolist() == [3]
    assert outlier_features(norm, 0).tolist() == []  # 0 disables the guard
    assert outlier_features(torch.zeros(5), 10).tolist() == []  # no median to compare with
    with pytest.raises(ValueError, match="vector"):
        outlier_features(torch.ones(2, 2), 10)
