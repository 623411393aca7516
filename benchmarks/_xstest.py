"""XSTest completions with their human labels, and the refusal probe's features for them (cached).

XSTest (Röttger et al., "XSTest: A Test Suite for Identifying Exaggerated Safety Behaviours in Large Language
Models", NAACL 2024; CC-BY-4.0) ships real completions of three models (gpt4, llama2new, mistralinstruct) to its
450 prompts, each labelled by two people and reconciled in `final_label`: 1_full_compliance, 2_full_refusal,
3_partial_refusal. The files are read at run time from ../shared/datasets/xstest (or --xstest DIR).
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

XSTEST_MODELS = ("gpt4", "llama2new", "mistralinstruct")
LABELS = {"1_full_compliance": "full_compliance", "2_full_refusal": "full_refusal",
          "3_partial_refusal": "partial_refusal"}
REPO = Path(__file__).resolve().parents[1]


def default_xstest_dir() -> Path:
    shared = os.environ.get("REALIGNKIT_SHARED_DATASETS")
    return Path(shared) / "xstest" if shared else REPO.parent / "shared" / "datasets" / "xstest"


@dataclass(frozen=True)
class Row:
    model: str
    id: str
    type: str
    prompt: str
    completion: str
    label: str  # full_compliance | full_refusal | partial_refusal
    annotations: tuple[str, str]

    @property
    def refused(self) -> bool:
        return self.label != "full_compliance"


def load_xstest(folder: Path) -> dict[str, list[Row]]:
    """{model: rows} for the three completion files; exits with one line when a file is missing."""
    data = {}
    for model in XSTEST_MODELS:
        path = folder / f"completions_{model}.csv"
        if not path.is_file():
            sys.exit(f"error: {path} not found (pass --xstest DIR with completions_{{{','.join(XSTEST_MODELS)}}}.csv)")
        with path.open(newline="", encoding="utf-8") as handle:
            data[model] = [Row(model, r["id"], r["type"], r["prompt"], r["completion"], LABELS[r["final_label"]],
                               (LABELS[r["annotation_1"]], LABELS[r["annotation_2"]]))
                           for r in csv.DictReader(handle)]
    return data


def data_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for model in XSTEST_MODELS:
        digest.update((folder / f"completions_{model}.csv").read_bytes())
    return digest.hexdigest()[:16]


def probe_features(data: dict[str, list[Row]], spec, folder: Path, *, gguf_sha256: str,
                   model_dir: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    """{model: [n, d] features}; computed once per (data, spec, feature model) and cached as .npz."""
    from realignkit.evaluation.judges.probe_features import hidden_state_features
    from realignkit.evaluation.judges.refusal_probe import load_feature_model

    key = hashlib.sha256(f"{data_digest(folder)}{spec.to_json()}{gguf_sha256}".encode()).hexdigest()[:16]
    cached = cache_dir / f"xstest-probe-features-{key}.npz"
    if cached.is_file():
        stored = np.load(cached)
        return {model: stored[model] for model in data}
    model, tokenizer = load_feature_model(model_dir, spec.depth)
    features = {}
    for name, rows in data.items():
        print(f"features: {name} ({len(rows)} answers) ...", file=sys.stderr, flush=True)
        features[name] = hidden_state_features(model, tokenizer, [r.prompt for r in rows],
                                               [r.completion for r in rows], spec, progress=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = cached.with_suffix(".tmp.npz")
    np.savez(temporary, **features)
    os.replace(temporary, cached)
    return features
