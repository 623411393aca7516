"""Write the per-layer drift table: text for the terminal, diagnose.csv / diagnose.json, diagnose.png."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

from realignkit.common import (
    atomic_output_dir,
    check_output_not_inside_inputs,
    prepare_output_dir,
    write_manifest,
)
from realignkit.diagnose.weights import ALL_MODULES, DriftRow, weight_drift

COLUMNS = ("layer", "module", "tensors", "params", "tau_norm", "aligned_norm", "relative_change", "cos_safety")


def _layer_label(layer: int | None) -> str:
    return "-" if layer is None else str(layer)


def format_table(rows: list[DriftRow], *, top_modules: int = 5) -> str:
    """Per-layer summary, then the modules that moved most (relative change)."""
    has_cos = any(row.cos_safety is not None for row in rows)
    header = f"{'layer':>5}  {'module':<24} {'|tau|':>11} {'|tau|/|aligned|':>15}" + (
        f" {'cos(tau,delta)':>14}" if has_cos else ""
    )
    lines = [header]
    summary = [r for r in rows if r.module == ALL_MODULES or r.layer is None]
    for row in summary:
        line = f"{_layer_label(row.layer):>5}  {row.module:<24} {row.tau_norm:>11.4g} {row.relative_change:>15.4g}"
        if has_cos:
            line += f" {row.cos_safety:>14.4f}"
        lines.append(line)
    modules = sorted((r for r in rows if r.module != ALL_MODULES), key=lambda r: -r.relative_change)[:top_modules]
    lines.append("most changed modules: " + ", ".join(
        f"layer {_layer_label(r.layer)} {r.module} ({r.relative_change:.3g})" for r in modules
    ))
    return "\n".join(lines)


def write_csv(rows: list[DriftRow], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            values = row.as_dict()
            values["layer"] = "" if row.layer is None else row.layer
            values["cos_safety"] = "" if row.cos_safety is None else row.cos_safety
            writer.writerow(values)


def plot_drift(rows: list[DriftRow], path: Path) -> None:
    """Relative change per layer by module type and, with a base, cos(τ, δ) per layer (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    layered = [r for r in rows if r.layer is not None]
    has_cos = any(r.cos_safety is not None for r in layered)
    figure, axes = plt.subplots(2 if has_cos else 1, 1, figsize=(9, 7 if has_cos else 4), squeeze=False)
    change_axis = axes[0][0]
    for module in sorted({r.module for r in layered}):
        points = sorted((r.layer, r.relative_change) for r in layered if r.module == module)
        style = {"linewidth": 2.5, "color": "black"} if module == ALL_MODULES else {"linewidth": 1, "alpha": 0.8}
        change_axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=module, **style)
    change_axis.set_ylabel("‖τ‖ / ‖θ_aligned‖")
    change_axis.set_xlabel("layer")
    change_axis.set_title("Weight change per layer and module type")
    change_axis.legend(fontsize=7, ncol=3)
    change_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if has_cos:
        cos_axis = axes[1][0]
        points = sorted((r.layer, r.cos_safety) for r in layered if r.module == ALL_MODULES)
        colors = ["tab:red" if p[1] < 0 else "tab:blue" for p in points]
        cos_axis.bar([p[0] for p in points], [p[1] for p in points], color=colors)
        cos_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        cos_axis.axhline(0, color="gray", linewidth=0.8)
        cos_axis.set_ylabel("cos(τ, δ)")
        cos_axis.set_xlabel("layer")
        cos_axis.set_title("Task vector vs safety vector (negative: fine-tuning undoes alignment)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_diagnose(
    aligned: str | os.PathLike[str],
    tuned: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str] | None = None,
    force: bool = False,
    allow_pickle: bool = False,
    progress: bool = True,
) -> list[DriftRow]:
    """Compute the drift rows and write diagnose.{csv,json,png} + realignkit.json to `out` (atomically)."""
    started = time.time()
    check_output_not_inside_inputs(out, [aligned, tuned, base])
    prepare_output_dir(out, force=force)
    rows = weight_drift(aligned, tuned, base, allow_pickle=allow_pickle, progress=progress)
    with atomic_output_dir(out, force=force) as tmp:
        write_csv(rows, tmp / "diagnose.csv")
        payload = {"columns": list(COLUMNS), "rows": [r.as_dict() for r in rows], "has_base": base is not None}
        (tmp / "diagnose.json").write_text(json.dumps(payload, indent=2) + "\n")
        plot_drift(rows, tmp / "diagnose.png")
        write_manifest(
            tmp,
            command="diagnose",
            parameters={},
            inputs={"aligned": aligned, "tuned": tuned, "base": base},
            started=started,
            extra={"outputs": ["diagnose.csv", "diagnose.json", "diagnose.png"]},
        )
    return rows
