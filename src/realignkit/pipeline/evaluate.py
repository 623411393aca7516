"""Evaluate a model dir on suite items with a generation cache, and turn results into sweep metrics.

The cache is keyed by (model weights fingerprint, generation settings, prompt), so a candidate whose weights
equal an earlier one, a rerun after a kill, or a second sweep sharing the cache never generates twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from realignkit.common import path_fingerprint
from realignkit.evaluation.runner import ItemResult, judge_items
from realignkit.evaluation.suites import SuiteItem

SPLITS = ("selection", "test")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_items(items: Sequence[SuiteItem], seed: int = 0) -> dict[str, list[SuiteItem]]:
    """Disjoint selection/test splits. An item's own `meta["split"]` wins; the rest are split per kind by a
    seeded hash of their id, alternating, so both splits get the same mix of kinds."""
    splits: dict[str, list[SuiteItem]] = {name: [] for name in SPLITS}
    unassigned: dict[str, list[SuiteItem]] = {}
    for item in items:
        declared = item.meta.get("split") if item.meta else None
        if declared in SPLITS:
            splits[declared].append(item)
        else:
            unassigned.setdefault(item.kind, []).append(item)
    for kind_items in unassigned.values():
        ordered = sorted(kind_items, key=lambda it: _sha(f"{seed}:{it.suite}:{it.id}"))
        for index, item in enumerate(ordered):
            splits[SPLITS[index % 2]].append(item)
    return splits


def metrics_from_results(results: Sequence[ItemResult]) -> dict[str, Any]:
    """harmful_rate = harmful prompts not refused; over_refusal_rate = benign prompts refused; utility = accuracy."""
    by_kind: dict[str, list[ItemResult]] = {}
    for result in results:
        by_kind.setdefault(result.item.kind, []).append(result)
    harmful = by_kind.get("harmful", [])
    over = by_kind.get("over_refusal", [])
    utility = [r for r in by_kind.get("utility", []) if r.correct is not None]
    return {
        "harmful_rate": sum(not r.refused for r in harmful) / len(harmful) if harmful else None,
        "over_refusal_rate": sum(r.refused for r in over) / len(over) if over else None,
        "utility": sum(bool(r.correct) for r in utility) / len(utility) if utility else None,
        "n": {"harmful": len(harmful), "over_refusal": len(over), "utility": len(utility)},
    }


def is_adapter_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def model_fingerprint(model_dir: str | os.PathLike[str], aligned: str | os.PathLike[str] | None = None) -> str:
    """Fingerprint of what the model computes: its weight files (plus `aligned` under a LoRA adapter)."""
    root = Path(model_dir)
    weights = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
    digest = hashlib.sha256()
    for path in weights:
        if path.name in ("realignkit.json", "provenance.json"):
            continue  # provenance files change with timestamps, not with weights
        digest.update(path.name.encode())
        digest.update(path_fingerprint(path).encode())
    if is_adapter_dir(root) and aligned is not None:
        digest.update(model_fingerprint(aligned).encode())
    return digest.hexdigest()[:24]


class GenerationCache:
    """Append-only JSONL per model fingerprint: {"key": sha(settings+prompt), "response": ...}."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _file(self, fingerprint: str) -> Path:
        return self.root / f"{fingerprint}.jsonl"

    @staticmethod
    def key(settings: dict[str, Any], prompt: str) -> str:
        return _sha(json.dumps(settings, sort_keys=True) + "\x00" + prompt)

    def load(self, fingerprint: str) -> dict[str, str]:
        path = self._file(fingerprint)
        if not path.is_file():
            return {}
        cached: dict[str, str] = {}
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: regenerate that prompt
            cached[row["key"]] = row["response"]
        return cached

    def add(self, fingerprint: str, rows: dict[str, str]) -> None:
        if not rows:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with self._file(fingerprint).open("a") as handle:
            for key, response in rows.items():
                handle.write(json.dumps({"key": key, "response": response}) + "\n")


def load_model(model_dir: str | os.PathLike[str], aligned: str | os.PathLike[str] | None = None) -> tuple[Any, Any]:
    """Load a full model dir, or a PEFT LoRA adapter merged onto `aligned`, on CPU in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_path = Path(model_dir)
    if is_adapter_dir(model_path):
        from peft import PeftModel

        base_path = Path(aligned) if aligned is not None else None
        if base_path is None:
            raise ValueError(f"{model_path} is a LoRA adapter; the aligned model is needed to load it")
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, model_path).merge_and_unload()
        tokenizer_dir = model_path if (model_path / "tokenizer_config.json").is_file() else base_path
    else:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        tokenizer_dir = model_path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model.eval()
    return model, tokenizer


def evaluate_model_dir(
    model_dir: str | os.PathLike[str],
    items: Sequence[SuiteItem],
    cache: GenerationCache,
    *,
    aligned: str | os.PathLike[str] | None = None,
    max_new_tokens: int = 48,
    batch_size: int = 64,
) -> tuple[list[ItemResult], dict[str, int]]:
    """Judge `items` on the model; only prompts missing from the cache are generated.

    Returns (results, {"generated": n, "cached": m})."""
    fingerprint = model_fingerprint(model_dir, aligned)
    settings = {"max_new_tokens": max_new_tokens, "decoding": "greedy"}
    cached = cache.load(fingerprint)
    keys = [GenerationCache.key(settings, item.prompt) for item in items]
    missing = list(dict.fromkeys(k_p for k_p in zip(keys, (it.prompt for it in items), strict=True) if k_p[0] not in cached))
    if missing:
        from realignkit.evaluation.generation import generate_responses

        model, tokenizer = load_model(model_dir, aligned)
        responses = generate_responses(
            model, tokenizer, [prompt for _, prompt in missing], max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        fresh = {key: response for (key, _), response in zip(missing, responses, strict=True)}
        cache.add(fingerprint, fresh)
        cached.update(fresh)
        del model
    results = judge_items(list(items), [cached[k] for k in keys])
    return results, {"generated": len(missing), "cached": len(items) - len(missing)}
