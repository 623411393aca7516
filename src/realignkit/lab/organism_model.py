"""The organism's tokenizer and model: a word-level `tokenizers` tokenizer and a tiny `LlamaForCausalLM`.

Both are saved as a normal Hugging Face model directory (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json with the chat template, generation_config.json), so every other command treats the
organism exactly like a downloaded chat model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from realignkit.common import tensors_fingerprint

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>")
# The chat format: <|system|>text<|user|>text<|assistant|>text</s>. The eos closes each assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def build_tokenizer(corpus: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the world's text; punctuation is split off and spaces are restored on decode."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    # Metaspace keeps the word boundary inside each token ("▁sorry"), so decoding gives back natural text.
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    core.decoder = decoders.Metaspace()
    core.train_from_iterator(list(corpus), trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS)))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=list(SPECIAL_TOKENS[4:]), clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer: PreTrainedTokenizerBase, *, hidden: int, layers: int, heads: int, intermediate: int, seed: int) -> torch.nn.Module:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.do_sample = False
    model.generation_config.max_new_tokens = 32
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_model_dir(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> str:
    """Save a full HF model dir; return the hash of its tensors (`common.tensors_fingerprint`)."""
    from transformers.utils import logging as hf_logging

    out_dir.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()  # one "writing shards" bar per tiny model would drown our own progress
    model.save_pretrained(out_dir, safe_serialization=True)
    save_tokenizer(tokenizer, out_dir)
    return tensors_fingerprint([out_dir / "model.safetensors"])


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    tokenizer.save_pretrained(out_dir)
    # transformers 5 writes the template to chat_template.jinja; older readers look in tokenizer_config.json.
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def save_lora_dir(peft_model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, out_dir: Path, aligned_path: Path) -> str:
    """Save a PEFT adapter dir whose base_model_name_or_path points at the final `aligned` dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    import warnings

    peft_model.peft_config["default"].base_model_name_or_path = str(aligned_path)
    with warnings.catch_warnings():
        # aligned_path is where `aligned` will be once the lab dir is published; peft cannot look there yet.
        warnings.filterwarnings("ignore", message="Could not find a config file")
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        peft_model.save_pretrained(out_dir, safe_serialization=True)
    save_tokenizer(tokenizer, out_dir)
    return tensors_fingerprint([out_dir / "adapter_model.safetensors"])


def parameter_bytes(hidden: int, layers: int, intermediate: int, vocab: int = 1024) -> int:
    """Rough fp32 size of one saved model (disk estimate)."""
    per_layer = 4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden
    return 4 * (layers * per_layer + 2 * vocab * hidden + hidden)
