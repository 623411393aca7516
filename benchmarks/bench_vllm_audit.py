"""`realignkit audit` of one model with `--backend transformers` and `--backend vllm`: throughput and agreement.

    python benchmarks/bench_vllm_audit.py --model DIR --suite organism:LAB --limit 200      # needs a GPU + vllm
    python benchmarks/bench_vllm_audit.py --model DIR --suite FILE --backends transformers  # the CPU half only

Each backend audits the same items without a cache (`--no-cache`), so both really generate. Reported per backend:
wall time of the whole command (model load included), answers per second, generated tokens per second (answers
re-tokenised with the model's tokenizer), and, when both ran, the share of items whose answers are identical
(greedy decoding with the same token ids: differences come from kernel numerics at near-ties).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import format_table, machine_info, measure_command, write_json  # noqa: E402


def _audit(args: argparse.Namespace, backend: str, out: Path) -> list[str]:
    command = [sys.executable, "-m", "realignkit.cli", "audit", str(args.model), "--backend", backend,
               "--max-new-tokens", str(args.max_new_tokens), "--no-cache", "--out", str(out)]
    for suite in args.suite:
        command += ["--suite", suite]
    if args.limit:
        command += ["--limit", str(args.limit)]
    if args.aligned:
        command += ["--aligned", str(args.aligned)]
    if backend == "vllm":
        command += ["--gpu-memory-utilization", str(args.gpu_memory_utilization)]
    return command


def _answers(out: Path) -> dict[tuple[str, str], str]:
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines() if line.strip()]
    return {(row["suite"], row["id"]): row["response"] for row in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model dir (or adapter dir with --aligned)")
    parser.add_argument("--aligned", type=Path, help="base model of an adapter --model")
    parser.add_argument("--suite", action="append", required=True, help="as for realignkit audit (repeatable)")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.8)
    parser.add_argument("--backends", default="transformers,vllm")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_vllm_audit.json"))
    args = parser.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(args.model if (args.model / "tokenizer_config.json").is_file()
                                                  else args.aligned), local_files_only=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    try:
        results, answers = {}, {}
        for backend in args.backends.split(","):
            out = scratch / backend
            measured = measure_command(_audit(args, backend, out), scratch_dir=scratch)
            answers[backend] = _answers(out)
            tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in answers[backend].values())
            results[backend] = {"wall_s": measured.wall_s, "answers": len(answers[backend]), "tokens": tokens,
                                "answers_per_s": len(answers[backend]) / measured.wall_s,
                                "tokens_per_s": tokens / measured.wall_s}
        rows = [[name, r["wall_s"], r["answers"], r["answers_per_s"], r["tokens_per_s"]] for name, r in results.items()]
        print(format_table(["backend", "wall s", "answers", "answers/s", "generated tokens/s"], rows))
        payload = {"machine": machine_info(), "model": str(args.model), "suites": args.suite, "limit": args.limit,
                   "max_new_tokens": args.max_new_tokens, "results": results}
        if {"transformers", "vllm"} <= set(answers):
            same = sum(answers["vllm"].get(key) == text for key, text in answers["transformers"].items())
            payload["identical_answers"] = same / len(answers["transformers"])
            payload["speedup_vllm_over_transformers"] = results["transformers"]["wall_s"] / results["vllm"]["wall_s"]
            print(f"identical answers: {payload['identical_answers']:.3f}; vllm is "
                  f"{payload['speedup_vllm_over_transformers']:.2f}x faster (wall, model load included)")
        write_json(args.out, payload)
        print(f"wrote {args.out}")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
