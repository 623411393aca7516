"""Bench plots: F1 vs horizon per detector, and example trajectories coloured by their anomaly score."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realignkit.drift.table import Fleet


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_f1_vs_horizon(rows: list[dict], fleet: str, path: Path) -> None:
    """Mean F1 over seeds (band: min..max) against horizon, one line per detector."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["detector"] for r in rows if r["fleet"] == fleet):
        mine = [r for r in rows if r["fleet"] == fleet and r["detector"] == name]
        horizons = sorted({r["horizon"] for r in mine})
        f1 = [[r["f1"] for r in mine if r["horizon"] == h] for h in horizons]
        ax.plot(horizons, [np.mean(v) for v in f1], marker="o", label=name, linewidth=2.2 if name == "cvae" else 1.2)
        ax.fill_between(horizons, [min(v) for v in f1], [max(v) for v in f1], alpha=0.12)
    ax.set(xlabel="horizon (fraction of the test seen)", ylabel="F1 of failure prediction", ylim=(0, 1.02),
           title=f"{fleet}: F1 vs horizon")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_trajectories(fleet: Fleet, scores: np.ndarray, flags: np.ndarray, horizon: float, duration: float,
                      path: Path, *, max_units: int = 40) -> None:
    """Up to `max_units` trajectories: failed (label 1) solid, healthy dashed, colour = anomaly score rank."""
    plt = _pyplot()
    rng = np.random.default_rng(0)
    labels = np.array([u.label if u.label is not None else 0 for u in fleet.units])
    chosen = _pick_examples(labels, max_units, rng)
    ranks = np.argsort(np.argsort(scores)) / max(len(scores) - 1, 1)  # 0 = most normal, 1 = most anomalous
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("viridis")
    for i in chosen:
        unit = fleet.units[i]
        style = "-" if labels[i] else "--"
        ax.plot(unit.times, unit.values[:, 0], style, color=cmap(ranks[i]), linewidth=1.6 if flags[i] else 0.8)
    ax.axvline(horizon * duration, color="red", linestyle=":", label=f"horizon {horizon:g}")
    sm = plt.cm.ScalarMappable(cmap=cmap)
    fig.colorbar(sm, ax=ax, label="anomaly score rank (CVAE)")
    ax.set(xlabel=fleet.time_col, ylabel=fleet.value_cols[0],
           title="solid = failed at end, dashed = healthy; thick = flagged at horizon")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pick_examples(labels: np.ndarray, max_units: int, rng: np.random.Generator) -> list[int]:
    failed, healthy = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_failed = min(len(failed), max_units // 2)
    picks = list(rng.choice(failed, n_failed, replace=False)) if n_failed else []
    n_healthy = min(len(healthy), max_units - n_failed)
    picks += list(rng.choice(healthy, n_healthy, replace=False)) if n_healthy else []
    return [int(i) for i in picks]
