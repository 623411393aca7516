"""Floor 3: where fine-tuning moved the weights (per-layer drift table and plot).

- `weight_drift(aligned, tuned, base=None) -> list[DriftRow]`: per (layer, module type) ‖τ‖, relative change,
  cos(τ, δ); plus one `(all)` row per layer.
- `run_diagnose(aligned, tuned, out, base=None)`: the same, written as diagnose.csv/json/png + realignkit.json.
"""

from realignkit.diagnose.outputs import format_table, plot_drift, run_diagnose, write_csv
from realignkit.diagnose.weights import ALL_MODULES, DriftRow, module_type, weight_drift

__all__ = [
    "ALL_MODULES",
    "DriftRow",
    "format_table",
    "module_type",
    "plot_drift",
    "run_diagnose",
    "weight_drift",
    "write_csv",
]
