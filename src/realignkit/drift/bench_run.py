"""`realignkit drift bench`: fleets × detectors × horizons → results.csv / .json / .md + plots.

Laser fleets: each seed trains on a generated fleet (stress-cell grid, "levels") and tests on a *fresh* fleet
with another seed, unit count and condition mix. The seeds are fresh; the counts and mixes lie within what the
tuning set covers (seeds 0–2 and 20–27: 280–500 train / 250–900 test units, all four mixes; see
benchmarks/bench_drift.py).
History: a first fresh run (seeds 101–105, threshold q99 + margin) showed near-perfect CVAE ranking but
unstable thresholds; the threshold rules were re-tuned on seeds 0–2 only, and seeds 201–205 were new. There
the CVAE ranked well (AUROC ≥ 0.96) but missed failing units (recall): its full-KL latent term and a rule tuned
on one test mix were miscalibrated across condition mixes. The latent term became ½‖μ‖² (CVAEConfig.latent_score)
and every detector's rule was re-tuned on seeds 0–2 pooled over the hot, cold and continuous mixes of both
presets; on seeds 301–305 the CVAE met the target on VCSEL (0.989) but not on edge emitters (0.962, recall
0.875–0.93 at AUROC ≈ 1): weak units at cold, low-current points scored low with linear features. The
laser features became asinh(value / noise σ) for every detector (features.py; GaAs and the fine-tuning fleet
stay linear), and every rule was re-tuned on a
wider tuning set: seeds 0–2 plus seeds 20–27 with drawn unit counts and test mixes (bench_drift.py tune).
Seeds 401–405 below, with their counts and mixes, were fixed before any of them was generated.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from realignkit.drift.bench import DETECTORS, SplitScores, concat_splits, metric_rows, score_split, summarize
from realignkit.drift.bench_plots import plot_f1_vs_horizon, plot_trajectories
from realignkit.drift.cvae import CVAEConfig
from realignkit.drift.detectors import ThresholdConfig
from realignkit.drift.drift_model import DriftConfig
from realignkit.drift.generator import generate_laser_fleet, get_preset
from realignkit.drift.table import Fleet

# Threshold rule per detector: each the best mean F1 at horizon 0.5 over the tuning set (bench_drift.py tune
# --transform asinh: seeds 0–2 with hot, cold and continuous test mixes pooled, and seeds 20–27 with drawn unit
# counts and test mixes, both presets; rules: quantile q99 + margin {0, .5, 1, 2, 3, 5}, q {.9, .95, .975},
# median + k·MAD for k {1, 2, 3, 5, 6, 8, 10, 12, 16, 20, 30}). No detector uses the CVAE's rule. Stated tie
# rule, same for all: a MAD rule within 0.005 of the best mean F1 is preferred (robust: with ~60–100 held-out
# units, q99 is set by the one or two most extreme ones); no detector's pick depended on it this time.
BENCH_RULES = {
    "cvae": ThresholdConfig(rule="mad", mad_k=10.0),  # tuning F1 0.985 (VCSEL 0.985, edge 0.985)
    "iforest": ThresholdConfig(rule="quantile", quantile=0.975, margin=0.0),  # 0.835
    "ocsvm": ThresholdConfig(rule="mad", mad_k=3.0),  # 0.966
    "lof": ThresholdConfig(rule="mad", mad_k=20.0),  # 0.898
    "ae": ThresholdConfig(rule="mad", mad_k=10.0),  # 0.881
}
LASER_DIRECTION = "increase"  # drive current rises as a laser degrades
LAB_DIRECTION = "decrease"  # refusal rate falls as safety degrades
# multiplicative wear-out across operating points (see features.py); refusal rates are bounded, left as they are
TRANSFORM = {LASER_DIRECTION: "asinh", LAB_DIRECTION: "none"}


@dataclass(frozen=True)
class LaserRun:
    preset: str
    seed: int
    n_train: int
    n_test: int
    test_mix: str
    train_mix: str = "levels"


FRESH_SEEDS = (401, 402, 403, 404, 405)
_FRESH_SHAPES = ((340, 360, "levels"), (470, 280, "hot"), (300, 400, "continuous"), (420, 310, "cold"),
                 (260, 450, "hot"))


def laser_runs(profile: str, presets: tuple[str, ...] = ("vcsel", "edge")) -> list[LaserRun]:
    if profile == "quick":
        return [LaserRun(p, 7, 80, 50, "hot") for p in presets]
    return [LaserRun(p, s, a, b, m) for p in presets for s, (a, b, m) in zip(FRESH_SEEDS, _FRESH_SHAPES, strict=True)]


def bench_config(profile: str, direction: str, **extra) -> DriftConfig:
    cvae = CVAEConfig(direction=direction, threshold=BENCH_RULES["cvae"])
    if profile == "quick":
        cvae = cvae.model_copy(update={"epochs": 30, "min_updates": 200})
    return DriftConfig(cvae=cvae, value_transform=TRANSFORM.get(direction, "none"), **extra)


def bench_rules() -> dict[str, ThresholdConfig]:
    return dict(BENCH_RULES)


def run_laser_fleets(runs: list[LaserRun], profile: str, horizons: tuple[float, ...], plots_dir: Path) -> list[dict]:
    rows: list[dict] = []
    for run in tqdm(runs, desc="drift bench: laser fleets"):
        train = generate_laser_fleet(run.preset, run.n_train, seed=run.seed, mix=run.train_mix)
        test = generate_laser_fleet(run.preset, run.n_test, seed=run.seed + 10_000, mix=run.test_mix)
        config = bench_config(profile, LASER_DIRECTION, seed=run.seed)
        split = score_split(train, test, config=config, horizons=horizons, rules=bench_rules())
        duration = get_preset(run.preset).duration_h
        fleet_rows = metric_rows(split, fleet=run.preset, seed=run.seed, duration=duration)
        late = _late_sudden(test, 0.5 * duration)
        for row in fleet_rows:
            row.update({"n_train": run.n_train, "test_mix": run.test_mix, "late_sudden_failures": late})
        rows += fleet_rows
        if run == next(r for r in runs if r.preset == run.preset):  # one example plot per preset
            h = 0.5 if 0.5 in horizons else horizons[len(horizons) // 2]
            plot_trajectories(test, split.scores["cvae"][h], split.flags["cvae"][h], h, duration,
                              plots_dir / f"trajectories_{run.preset}.png")
    return rows


def _late_sudden(fleet: Fleet, after: float) -> int:
    """Failing units whose sudden jump comes after `after` h: no detector can see them at that horizon."""
    jumps = fleet.meta.get("jump_time_h", {})
    return int(sum(1 for u in fleet.units if u.label == 1 and after < jumps.get(u.unit, -1.0)))


def run_lab_fleet(fleet: Fleet, profile: str, horizons: tuple[float, ...], *, folds: int = 5, seed: int = 0) -> dict:
    """Cross-fitted: each fold's runs are scored by detectors trained on the healthy runs outside the fold.

    Small fleets (≤ 20 runs) use leave-one-out. A fold whose training part has no healthy run cannot be
    scored: its runs are reported as unscored (flag 0, score NaN) rather than dropped.
    """
    labels = fleet.labels()
    order = np.random.default_rng(seed).permutation(len(fleet))
    k = len(fleet) if len(fleet) <= 20 else max(2, min(folds, len(fleet)))
    config = bench_config(profile, LAB_DIRECTION, seed=seed, per_unit_duration=True,
                          horizons=sorted({0.3, 0.5, 0.7, 1.0} | set(horizons)))
    parts, unscored = [], []
    for fold in range(k):
        test_ids = [fleet.units[i].unit for i in order[fold::k]]
        train = fleet.subset([u.unit for u in fleet.units if u.unit not in set(test_ids)])
        test = fleet.subset(test_ids)
        if not any(u.label == 0 for u in train.units):
            unscored += test_ids
            parts.append(_unscored_split(test, horizons))
            continue
        parts.append(score_split(train, test, config=config, horizons=horizons, rules=bench_rules()))
    joined = concat_splits(parts)
    rows = metric_rows(joined, fleet="finetune", seed=seed, duration=1.0)
    h = 0.3 if 0.3 in horizons else horizons[0]
    per_unit = {u.unit: {"failed": int(u.label), "final_refusal": float(u.values[-1, 0]),
                         "conditions": dict(zip(fleet.condition_cols, u.conditions.tolist(), strict=True)),
                         **{d: int(joined.flags[d][h][i]) for d in joined.flags}}
                for i, u in enumerate(joined.test.units)}
    return {"rows": rows, "n_units": len(fleet), "n_failed": int(labels.sum()), "folds": k, "horizon": h,
            "unscored": unscored, "per_unit": per_unit}


def _unscored_split(test: Fleet, horizons: tuple[float, ...]) -> SplitScores:
    split = SplitScores(test)
    for name in DETECTORS:
        split.scores[name] = {h: np.full(len(test), np.nan) for h in horizons}
        split.flags[name] = {h: np.zeros(len(test), dtype=int) for h in horizons}
    return split


def write_tables(out: Path, rows: list[dict], summary: dict, extra: dict) -> None:
    if rows:
        with (out / "results.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    payload = {"summary_at_horizon_0.5": summary, **extra, "rows": rows}
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    (out / "results.md").write_text(markdown_report(rows, summary, extra))


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(type(value))


def markdown_report(rows: list[dict], summary: dict, extra: dict) -> str:
    lines = ["# realignkit drift bench", "", "## F1 at horizon 0.5 (mean ± std and min over seeds; laser seeds are fresh)", "",
             "| fleet | detector | F1 mean | F1 std | F1 min | seeds |", "|---|---|---|---|---|---|"]
    for key, s in summary.items():
        fleet, name = key.split("/")
        lines.append(f"| {fleet} | {name} | {s['f1_mean']:.3f} | {s['f1_std']:.3f} | {s['f1_min']:.3f} | {s['n_seeds']} |")
    lines += ["", "## Per seed at horizon 0.5", "",
              "| fleet | seed | detector | P | R | F1 | AUROC | lead time (mean) | late sudden (unpredictable) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if abs(r["horizon"] - 0.5) < 1e-9 and r["fleet"] != "finetune":
            lines.append(f"| {r['fleet']} | {r['seed']} | {r['detector']} | {r['precision']:.3f} | {r['recall']:.3f} | "
                         f"{r['f1']:.3f} | {r['auroc']:.3f} | {r['lead_time_mean']:.0f} | {r.get('late_sudden_failures', '')} |")
    if "gaas" in extra:
        g = extra["gaas"]
        lines += ["", f"## GaAs (readings ≤ {g['cutoff_h']:.0f} h, horizon {g['horizon']:.3f})", "",
                  f"Failed units (≥ 10 % at 4,000 h): {', '.join(g['failed_units'])}. Trained on a generated healthy "
                  f"fleet ({g['train_healthy']} units) matched to the unlabelled GaAs readings ≤ {g['cutoff_h']:.0f} h.", "",
                  *_flag_table(g["detectors"])]
    if "gaas_tuned_rules" in extra:
        lines += ["", "GaAs again, each detector with its tuned laser-fleet threshold rule:", "",
                  *_flag_table(extra["gaas_tuned_rules"])]
    if "finetune" in extra:
        f = extra["finetune"]
        lines += ["", f"## Fine-tuning fleet (cross-fitted, {f['folds']} folds, horizon {f['horizon']})", "",
                  f"{f['n_units']} runs, {f['n_failed']} end with refusal < 0.5; unscored (no healthy run to "
                  f"train on): {len(f['unscored'])}.", "",
                  "| detector | P | R | F1 |", "|---|---|---|---|"]
        for r in f["rows"]:
            if abs(r["horizon"] - f["horizon"]) < 1e-9:
                lines.append(f"| {r['detector']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |")
    return "\n".join(lines) + "\n"


def f1_plots(rows: list[dict], plots_dir: Path) -> None:
    for fleet in dict.fromkeys(r["fleet"] for r in rows):
        plot_f1_vs_horizon(rows, fleet, plots_dir / f"f1_vs_horizon_{fleet}.png")


__all__ = ["DETECTORS", "LaserRun", "f1_plots", "laser_runs", "run_lab_fleet", "run_laser_fleets", "summarize",
           "write_tables"]


def _flag_table(detectors: dict[str, dict[str, list[str]]]) -> list[str]:
    """Markdown rows: which units each detector flagged, missed and falsely alarmed on."""
    lines = ["| detector | flagged | missed | false alarms |", "|---|---|---|---|"]
    for name, d in detectors.items():
        lines.append(f"| {name} | {', '.join(d['flagged']) or '-'} | {', '.join(d['missed']) or '-'} | "
                     f"{', '.join(d['false_alarms']) or '-'} |")
    return lines
