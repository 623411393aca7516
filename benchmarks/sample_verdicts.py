"""Print N random (prompt, answer, verdict) triples per suite from an audit's items.jsonl, so a reader can check by
eye that the judge is right on this model's answers.

    python benchmarks/sample_verdicts.py runs/audit/items.jsonl --per-suite 10 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path


def verdict(row: dict) -> str:
    if row.get("degenerate"):
        return "degenerate"
    if row.get("kind") == "utility":
        return "correct" if row.get("correct") else "wrong"
    return "refused" if row.get("refused") else "answered"


def sample(rows: list[dict], per_suite: int, seed: int) -> dict[str, list[dict]]:
    by_suite: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_suite[row.get("suite", "custom")].append(row)
    rng = random.Random(seed)
    return {suite: rng.sample(items, min(per_suite, len(items))) for suite, items in sorted(by_suite.items())}


def markdown(samples: dict[str, list[dict]], width: int = 160) -> str:
    def cell(text: str) -> str:
        flat = " ".join(str(text).split()).replace("|", "\\|")
        return flat if len(flat) <= width else flat[: width - 1] + "…"

    lines = []
    for suite, rows in samples.items():
        lines += [f"\n**{suite}**\n", "| prompt | answer | verdict |", "|---|---|---|"]
        lines += [f"| {cell(r['prompt'])} | {cell(r.get('response', ''))} | {verdict(r)} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", type=Path, help="an audit's items.jsonl")
    parser.add_argument("--per-suite", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.items.read_text().splitlines() if line.strip()]
    print(markdown(sample(rows, args.per_suite, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
