"""Degradation prediction (`realignkit drift`): fit time, threshold tuning, and the full bench.

    python benchmarks/bench_drift.py fit-time [--units 500]     # CVAE fit on a 500-unit fleet (target ≤ 60 s)
    python benchmarks/bench_drift.py tune                       # seeds 0-2, both presets, mixes pooled: F1@0.5 per rule
    python benchmarks/bench_drift.py bench --out DIR [--lab D]  # = realignkit drift bench (fresh seeds)

`tune` is where runner.BENCH_RULES and the CVAE defaults come from; the bench then runs on *other* seeds,
unit counts and condition mixes. Prints tables and writes JSON (--json).
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
MARGINS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
MAD_KS = (3.0, 5.0, 8.0, 10.0, 12.0, 16.0, 20.0, 30.0)


def _rules():
    from realignkit.drift.detectors import ThresholdConfig

    rules = {f"quantile m={m}": ThresholdConfig(rule="quantile", margin=m) for m in MARGINS}
    rules.update({f"mad k={k}": ThresholdConfig(rule="mad", mad_k=k) for k in MAD_KS})
    return rules


def fit_time(units: int, seed: int) -> dict:
    import torch

    from realignkit.drift.bench import healthy_units
    from realignkit.drift.generator import generate_laser_fleet
    from realignkit.drift.model import DriftConfig, DriftModel

    fleet = generate_laser_fleet("vcsel", units, seed=seed)
    healthy = healthy_units(fleet)
    started = time.perf_counter()
    DriftModel(DriftConfig(seed=seed)).fit(healthy)
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


def tune() -> dict:
    from realignkit.drift.bench import DETECTORS, metric_rows, score_split
    from realignkit.drift.cvae import CVAEConfig
    from realignkit.drift.generator import generate_laser_fleet
    from realignkit.drift.model import DriftConfig

    rules = _rules()
    f1: dict[str, dict[str, list[float]]] = {name: {r: [] for r in rules} for name in DETECTORS}
    for preset in TUNING_PRESETS:
        for seed in TUNING_SEEDS:
            train = generate_laser_fleet(preset, 400, seed=seed, mix="levels")
            test = _pooled_test_fleet(preset, seed)
            config = DriftConfig(seed=seed, cvae=CVAEConfig(direction="increase"))
            split = score_split(train, test, config=config, horizons=(0.5,))
            for label, rule in rules.items():
                split.apply_thresholds({name: rule for name in DETECTORS})
                for row in metric_rows(split, fleet=preset, seed=seed, duration=1.0):
                    f1[row["detector"]][label].append(row["f1"])
    table = {name: {r: float(np.mean(v)) for r, v in by_rule.items()} for name, by_rule in f1.items()}
    best = {name: max(by_margin, key=lambda m: by_margin[m]) for name, by_margin in table.items()}
    return {"seeds": list(TUNING_SEEDS), "presets": list(TUNING_PRESETS), "test_mixes": list(TUNING_TEST_MIXES),
            "mean_f1_at_0.5": table, "best_margin": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    ft = sub.add_parser("fit-time")
    ft.add_argument("--units", type=int, default=500)
    ft.add_argument("--seed", type=int, default=0)
    sub.add_parser("tune")
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
        result = tune()
        print("mean F1 at horizon 0.5 over tuning seeds", result["seeds"], "presets", result["presets"],
              "pooled test mixes", result["test_mixes"])
        for name, row in result["mean_f1_at_0.5"].items():
            print(f"{name:8} " + "  ".join(f"{r}: {v:.3f}" for r, v in row.items()) + f"  | best {result['best_margin'][name]}")
    else:
        from realignkit.drift.api import run_bench

        result = run_bench(args.out, profile=args.profile, lab=args.lab)
        print(Path(args.out, "results.md").read_text())
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
