"""Batched vs one-prompt-at-a-time greedy generation: speed ratio and identical outputs.

    python benchmarks/bench_generate.py --lab LABDIR          # the organism's aligned model and its suites
    python benchmarks/bench_generate.py --model DIR           # any HF chat model dir, synthetic prompts
    python benchmarks/bench_generate.py                       # a small random Llama built in a temp dir

Prints a table and writes JSON (--out). The target is batched >= 5x faster with the same outputs.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path


def _random_model_dir(root: Path) -> Path:
    """A random LlamaForCausalLM (about 1M parameters) with a word-level tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<user>", "<assistant>", "<system>"]
    vocab = {token: i for i, token in enumerate(specials + [f"w{i}" for i in range(500)])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} </s> {% endfor %}"
        "{% if add_generation_prompt %}<assistant> {% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    path = root / "random-llama"
    LlamaForCausalLM(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def _prompts(args: argparse.Namespace) -> tuple[Path, list[str], str]:
    rng = random.Random(args.seed)
    if args.lab:
        from realignkit.evaluation import load_suites

        items = load_suites([f"organism:{args.lab}"])
        picked = rng.sample(items, min(args.n, len(items)))
        return Path(args.lab) / "aligned", [item.prompt for item in picked], "organism aligned"
    model_dir = (
        Path(args.model) if args.model else _random_model_dir(Path(tempfile.mkdtemp(prefix="bench-gen-")))
    )
    prompts = [" ".join(f"w{rng.randrange(500)}" for _ in range(rng.randint(3, 20))) for _ in range(args.n)]
    return model_dir, prompts, "given model" if args.model else "random Llama (no lab given)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", help="organism lab dir (uses LAB/aligned and LAB/suites)")
    parser.add_argument("--model", help="HF model dir (synthetic w-word prompts)")
    parser.add_argument("--n", type=int, default=64, help="number of prompts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (same for both modes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_generate.json")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from realignkit.evaluation.generation import generate_responses

    torch.set_num_threads(args.threads)
    model_dir, prompts, source = _prompts(args)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    generate_responses(model, tokenizer, prompts[:2], max_new_tokens=4, batch_size=2)  # warm-up

    start = time.perf_counter()
    batched = generate_responses(
        model,
        tokenizer,
        prompts,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        progress=True,
    )
    batched_seconds = time.perf_counter() - start
    start = time.perf_counter()
    single = [
        generate_responses(model, tokenizer, [p], max_new_tokens=args.max_new_tokens, batch_size=1)[0]
        for p in prompts
    ]
    single_seconds = time.perf_counter() - start

    same = sum(a == b for a, b in zip(batched, single, strict=True))
    result = {
        "source": source,
        "model": str(model_dir),
        "n_prompts": len(prompts),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "threads": args.threads,
        "batched_seconds": round(batched_seconds, 3),
        "one_at_a_time_seconds": round(single_seconds, 3),
        "speedup": round(single_seconds / batched_seconds, 2),
        "identical_outputs": same,
        "all_identical": same == len(prompts),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "mismatches": [
            {"prompt": p, "batched": a, "single": b}
            for p, a, b in zip(prompts, batched, single, strict=True)
            if a != b
        ][:5],
    }
    print(f"{'mode':<16}{'seconds':>10}")
    print(f"{'batched':<16}{batched_seconds:>10.2f}")
    print(f"{'one at a time':<16}{single_seconds:>10.2f}")
    print(
        f"speedup {result['speedup']}x on {len(prompts)} prompts ({source}); identical outputs {same}/{len(prompts)}"
    )
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if result["all_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
