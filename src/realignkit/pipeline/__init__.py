"""realignkit.pipeline (floor 4): sweep every repair method -> Pareto front -> pick under a utility floor, in a
resumable run directory; and the end-to-end demo on the model organism.

Public API:
- `build_config(settings: dict, known_methods=None) -> SweepConfig`, `load_recipe(path) -> dict`;
- `run_sweep(config, out, *, earlier_run="resume"|"discard"|"discard_if_changed", progress=True, cache_dir=None,
  executor=None) -> SweepOutcome`
  (writes OUT/sweep.json, OUT/report/report.html + pareto.png, OUT/winner/, OUT/realignkit.json; work happens
  in OUT.partial/ and resumes after a kill); `executor=ExecutorOptions(name="ray", ...)` (pipeline.executors)
  runs each candidate as a Ray task instead of in this process, with the same sweep.json;
- `pareto_front(points)`, `pick_winner(points, floor)` on `Point(id, harmful_rate, utility_retained,
  over_refusal_rate)`;
- `run_demo(DemoSettings(out=...)) -> summary dict` (writes OUT/index.html, OUT/summary.json).
"""

from realignkit.pipeline.pareto import Point, pareto_front, pick_winner
from realignkit.pipeline.sweep_config import DEFAULT_GRIDS, SweepConfig, build_config, load_recipe

__all__ = [
    "DEFAULT_GRIDS",
    "DemoSettings",
    "Point",
    "SweepConfig",
    "SweepOutcome",
    "build_config",
    "load_recipe",
    "pareto_front",
    "pick_winner",
    "run_demo",
    "run_sweep",
]


def __getattr__(name: str):  # heavier entry points load on first use
    if name in ("run_sweep", "SweepOutcome"):
        from realignkit.pipeline import sweep

        return getattr(sweep, name)
    if name in ("run_demo", "DemoSettings"):
        from realignkit.pipeline import demo

        return getattr(demo, name)
    raise AttributeError(name)
