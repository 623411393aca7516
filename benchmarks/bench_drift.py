"""Degradation prediction (`realignkit drift`): fit time, threshold tuning, and the full bench.

    python benchmarks/bench_drift.py fit-time [--units 500]     # CVAE fit on a 500-unit fleet (target ≤ 60 s)
    python benchmarks/bench_drift.py tune [--transform asinh]   # tuning seeds 0-2 + 20-27, both presets: F1@0.5 per rule
    python benchmarks/bench_drift.py bench --out DIR [--lab D]  # = realignkit drift bench (fresh seeds)

`tune` is where runner.BENCH_RULES and the CVAE defaults come from; the bench then runs on fresh seeds (their
unit counts and condition mixes lie within what the tuning set covers). Prints tables and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

TUNING_SEEDS = (0, 1, 2)
TUNING_PRESETS = ("vcsel", "edge")
TUNING_TEST_MIXES = ("hot", "cold", "continuous")  # training fleets use "levels"
EXTRA_TUNING_SEEDS = tuple(range(20, 28))  # drawn fleet shapes; see _tuning_splits
MARGINS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
MAD_KS = (1.0, 2.0, 3.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 30.0)
LOW_QUANTILES = (0.9, 0.95, 0.975)  # q at margin 0: for detectors whose best rule sits at the low end of the grid


def _rules():
    from realignkit.drift.detectors import ThresholdConfig

    rules = {f"quantile m={m}": ThresholdConfig(rule="quantile", margin=m) for m in MARGINS}
    rules.update({f"mad k={k}": ThresholdConfig(rule="mad", mad_k=k) for k in MAD_KS})
    rules.update({f"quantile q={q}": ThresholdConfig(rule="quantile", quantile=q, margin=0.0) for q in LOW_QUANTILES})
    return rules


def fit_time(units: int, seed: int) -> dict:
    import torch

    from realignkit.drift.bench import healthy_units
    from realignkit.drift.drift_model import DriftConfig, DriftModel
    from realignkit.drift.generator import generate_laser_fleet

    fleet = generate_laser_fleet("vcsel", units, seed=seed)
    healthy = healthy_units(fleet)
    started = time.perf_counter()
    DriftModel(DriftConfig(seed=seed, value_transform="asinh")).fit(healthy)
    seconds = time.perf_counter() - started
    return {"units": units, "healthy_units": len(healthy), "fit_seconds": round(seconds, 2),
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg()}


def _pooled_test_fleet(preset: str, seed: int):
    """One test fleet per condition mix, pooled (unit ids prefixed by the mix): each detector is fitted once
    per training fleet and judged across mixes, so no rule is tuned to a single mix."""
    from realignkit.drift.generator import generate_laser_fleet
    from realignkit.drift.table import Fleet

    units = []
    for mix in TUNING_TEST_MIXES:
        fleet = generate_laser_fleet(preset, 300, seed=seed + 1000, mix=mix)
        for unit in fleet.units:
            unit.unit = f"{mix}-{unit.unit}"
        units += fleet.units
    return Fleet(units, fleet.value_cols, fleet.condition_cols, fleet.unit_col, fleet.time_col, {})


def _tuning_splits():
    """(preset, seed, train, test): seeds 0–2 (400 units, test mixes pooled) and seeds 20–27 with drawn shapes
    (280–500 train / 250–420 test units, one drawn test mix), so rules are tuned across fleet sizes and mixes."""
    from realignkit.drift.generator import generate_laser_fleet

    for preset in TUNING_PRESETS:
        for seed in TUNING_SEEDS:
            yield preset, seed, generate_laser_fleet(preset, 400, seed=seed, mix="levels"), _pooled_test_fleet(preset, seed)
        for seed in EXTRA_TUNING_SEEDS:
            rng = np.random.default_rng(seed * 7 + (preset == "edge"))
            n_train, n_test = int(rng.integers(280, 501)), int(rng.integers(250, 421))
            mix = ("hot", "cold", "continuous", "levels")[int(rng.integers(4))]
            train = generate_laser_fleet(preset, n_train, seed=seed, mix="levels")
            yield preset, seed, train, generate_laser_fleet(preset, n_test, seed=seed + 10_000, mix=mix)


def tune(transform: str) -> dict:
    from realignkit.drift.bench import DETECTORS, metric_rows, score_split
    from realignkit.drift.cvae import CVAEConfig
    from realignkit.drift.drift_model import DriftConfig

    rules = _rules()
    f1: dict[str, dict[str, dict[str, list[float]]]] = {
        p: {name: {r: [] for r in rules} for name in DETECTORS} for p in TUNING_PRESETS}
    for preset, seed, train, test in _tuning_splits():
        config = DriftConfig(seed=seed, value_transform=transform, cvae=CVAEConfig(direction="increase"))
        split = score_split(train, test, config=config, horizons=(0.5,))
        for label, rule in rules.items():
            split.apply_thresholds({name: rule for name in DETECTORS})
            for row in metric_rows(split, fleet=preset, seed=seed, duration=1.0):
                f1[preset][row["detector"]][label].append(row["f1"])
        print(f"tuned on {preset} seed {seed} ({len(train)} train / {len(test)} test units)", flush=True)
    table = {name: {r: float(np.mean(f1["vcsel"][name][r] + f1["edge"][name][r])) for r in rules}
             for name in DETECTORS}
    per_preset = {p: {name: {r: float(np.mean(v)) for r, v in by_rule.items()} for name, by_rule in d.items()}
                  for p, d in f1.items()}
    best = {name: max(by_rule, key=lambda r: by_rule[r]) for name, by_rule in table.items()}
    return {"transform": transform, "seeds": list(TUNING_SEEDS) + list(EXTRA_TUNING_SEEDS),
            "presets": list(TUNING_PRESETS), "mean_f1_at_0.5": table, "per_preset": per_preset, "best_rule": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    ft = sub.add_parser("fit-time")
    ft.add_argument("--units", type=int, default=500)
    ft.add_argument("--seed", type=int, default=0)
    tune_parser = sub.add_parser("tune")
    tune_parser.add_argument("--transform", choices=("none", "asinh"), default="asinh")
    bench = sub.add_parser("bench")
    bench.add_argument("--out", required=True)
    bench.add_argument("--lab", default=None)
    bench.add_argument("--profile", default="full")
    parser.add_argument("--json", default=None, help="write the result here")
    args = parser.parse_args()
    if args.what == "fit-time":
        result = fit_time(args.units, args.seed)
        print(f"CVAE fit on {result['units']} units ({result['healthy_units']} healthy): {result['fit_seconds']} s "
              f"(target ≤ 60 s; load average {result['load_average']})")
    elif args.what == "tune":
        result = tune(args.transform)
        print(f"mean F1 at horizon 0.5, features {result['transform']}, tuning seeds {result['seeds']}, presets "
              f"{result['presets']}")
        for name, row in result["mean_f1_at_0.5"].items():
            print(f"{name:8} " + "  ".join(f"{r}: {v:.3f}" for r, v in row.items()) + f"  | best {result['best_rule'][name]}")
        for preset, by_name in result["per_preset"].items():
            for name, row in by_name.items():
                print(f"  {preset:6} {name:8} " + "  ".join(f"{r}: {v:.3f}" for r, v in row.items()))
    else:
        from realignkit.drift.commands import run_bench

        result = run_bench(args.out, profile=args.profile, lab=args.lab)
        print(Path(args.out, "results.md").read_text())
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
