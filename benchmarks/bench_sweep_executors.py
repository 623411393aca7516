"""The same sweep on `--executor local` and `--executor ray` (a local Ray the command starts): wall time and
whether the winner and every selection-split number agree.

    python benchmarks/bench_sweep_executors.py                       # builds the tiny organism in a temp dir
    python benchmarks/bench_sweep_executors.py --lab LABDIR --limit 24 --ray-cpus 2 --runs 3

On one small machine Ray can only add overhead (its start-up, a worker process per task, each importing torch);
what it buys is running candidates on many GPUs or nodes at once. This measures that overhead, honestly, on the
machine at hand. Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import format_table, machine_info, measure_command, median, write_json  # noqa: E402

COMPARED = ("harmful_rate", "over_refusal_rate", "utility", "utility_retained", "degenerate_rate", "items")


def _sweep(lab: Path, out: Path, args: argparse.Namespace, executor: list[str]) -> list[str]:
    grid = ["--grid", "interpolate.alpha=0.1,0.2,0.3,0.5", "--grid", "resta.beta=0.5,1.0"]
    return [sys.executable, "-m", "realignkit.cli", "sweep", "--aligned", str(lab / "aligned"),
            "--tuned", str(lab / "harmful-mix-0.1-full"), "--base", str(lab / "base"),
            "--methods", "interpolate,resta", *grid, "--limit", str(args.limit), "--max-new-tokens", "24",
            "--no-progress", "--out", str(out), *executor]


def _agreement(local: dict, ray: dict) -> dict[str, bool]:
    rows = {c["label"]: c["selection"] for c in ray["candidates"]}
    same_numbers = all(rows[c["label"]][key] == c["selection"][key]
                       for c in local["candidates"] for key in COMPARED)
    return {"same_winner": local["winner"]["id"] == ray["winner"]["id"], "same_selection_numbers": same_numbers,
            "same_candidates": set(rows) == {c["label"] for c in local["candidates"]}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", type=Path, help="a built lab dir (default: build the tiny organism)")
    parser.add_argument("--limit", type=int, default=24, help="items per suite (default 24)")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray instance (default 2)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_sweep_executors.json"))
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-executors-"))
    try:
        lab = args.lab
        if lab is None:
            from realignkit.lab import build_lab

            lab = scratch / "lab"
            build_lab(lab, profile="tiny", seed=0, progress=False)
        executors = {"local": [], "ray": ["--executor", "ray", "--ray-num-cpus", str(args.ray_cpus)]}
        runs: dict[str, list] = {name: [] for name in executors}
        summaries: dict[str, dict] = {}
        for repeat in range(args.runs):
            order = list(executors) if repeat % 2 == 0 else list(reversed(executors))
            for name in order:
                out = scratch / f"{name}-{repeat}"
                runs[name].append(measure_command(_sweep(lab, out, args, executors[name]), scratch_dir=scratch))
                summaries[name] = json.loads((out / "sweep.json").read_text())
        agreement = _agreement(summaries["local"], summaries["ray"])
        # Wall time only: Ray's workers are children of its raylet, not of the measured command, so CPU time
        # from getrusage would leave them out.
        rows = [[name, median([m.wall_s for m in ms]), min(m.wall_s for m in ms), len(ms)]
                for name, ms in runs.items()]
        print(format_table(["executor", "wall s (median)", "wall s (min)", "runs"], rows))
        print(f"ray / local wall: {rows[1][1] / rows[0][1]:.2f}x; " + ", ".join(f"{k}: {v}" for k, v in agreement.items()))
        write_json(args.out, {"machine": machine_info(), "limit": args.limit, "ray_cpus": args.ray_cpus,
                              "candidates": len(summaries["local"]["candidates"]), "agreement": agreement,
                              "runs": {name: [m.to_json() for m in ms] for name, ms in runs.items()}})
        print(f"wrote {args.out}")
        return 0 if all(agreement.values()) else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
