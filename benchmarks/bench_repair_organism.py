"""Organism table: data-driven repairs (antidote, somf) next to interpolate's curve, on the lab's fine-tunes.

For each scenario (default: harmful-mix-0.1 full and LoRA, explicit-10 full) it repairs the fine-tune with
every grid point, measures the repaired model on the lab's test suites through `lab.measure_organism.measure_model`
(the same numbers as lab.json) and records the repair's wall-clock minutes (calibration/training included,
evaluation excluded). It prints a Markdown table and writes JSON.

    python benchmarks/bench_repair_organism.py --lab /tmp/organism_default --json benchmarks/out/repair_organism.json

Nothing is tuned toward a result: methods run with their documented defaults except the swept parameter.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROWS = ("harmful_refusal", "harmful_refusal_heldout_category", "new_skill_accuracy", "old_skill_accuracy",
        "borderline_answered")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lab", default="/tmp/organism_default", help="a lab dir built by `realignkit lab build`"
    )
    parser.add_argument("--scenarios", default="harmful-mix-0.1-full,harmful-mix-0.1-lora,explicit-10-full")
    parser.add_argument("--interpolate-alphas", default="0.25,0.5,0.75")
    parser.add_argument("--antidote-alphas", default="0.01,0.05,0.1,0.2")
    parser.add_argument("--somf-steps", default="50,200")
    parser.add_argument(
        "--somf-threshold-steps", default="200", help="step counts also run with final_mask=threshold"
    )
    parser.add_argument("--split", default="test", help="suite split to report on (test or select)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/out/repair_organism.json")
    return parser.parse_args(argv)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def load_suites(lab: Path, split: str) -> dict[str, list[Any]]:
    from realignkit.evaluation.suite_items import SuiteItem

    suites = {}
    for name in ("harmful", "borderline", "old_skill", "new_skill"):
        rows = [
            json.loads(line)
            for line in (lab / "suites" / split / f"{name}.jsonl").read_text().splitlines()
            if line
        ]
        suites[name] = [
            SuiteItem(
                id=r["id"],
                prompt=r["prompt"],
                kind=r["kind"],
                category=r["category"],
                answer=r.get("answer"),
                suite=name,
            )  # fmt: skip
            for r in rows
        ]
    return suites


def measure_dir(path: Path, aligned: Path, suites: dict[str, list[Any]]) -> dict[str, Any]:
    """Load a model dir (or a LoRA adapter on aligned) and measure it like lab.json does."""
    from realignkit.calibration.models import load_calibration_model, load_tokenizer
    from realignkit.lab.measure_organism import measure_model

    model, is_lora = load_calibration_model(path, aligned)
    if is_lora:
        model = model.merge_and_unload()
    return measure_model(model, load_tokenizer(path, aligned), suites)


def grid(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, label, params) for every point."""
    points: list[tuple[str, str, dict[str, Any]]] = []
    points += [("interpolate", f"alpha={a:g}", {"alpha": a}) for a in floats(args.interpolate_alphas)]
    points += [("antidote", f"alpha={a:g}", {"alpha": a}) for a in floats(args.antidote_alphas)]
    points += [("somf", f"steps={int(s)}", {"steps": int(s)}) for s in floats(args.somf_steps)]
    points += [("somf", f"steps={int(s)},threshold", {"steps": int(s), "final_mask": "threshold"})
               for s in floats(args.somf_threshold_steps)]  # fmt: skip
    return points


def run_point(
    method: str, params: dict[str, Any], tuned: Path, lab: Path, work: Path
) -> tuple[Path, float, dict]:
    from realignkit.methods.engine import RepairOptions, run_repair

    calibration = {
        "antidote": lab / "calibration" / "antidote.jsonl",
        "somf": lab / "calibration" / "somf.jsonl",
    }
    out = work / f"{method}-{len(list(work.iterdir()))}"
    started = time.time()
    result = run_repair(method, params, tuned=[tuned], aligned=lab / "aligned", out=out,
                        calibration=calibration.get(method), options=RepairOptions(show_progress=False))  # fmt: skip
    return out, (time.time() - started) / 60.0, result.extra


def _method_notes(method: str, extra: dict[str, Any]) -> dict[str, Any]:
    if method == "antidote":
        info = extra["antidote"]
        return {
            "pruned_total": info["pruned_total"],
            "targeted_total": info["targeted_total"],
            "mode": info["mode"],
        }
    if method == "somf":
        info = extra["somf"]
        keys = ("mode", "masked_entries", "mask_mean", "dpo_loss_unmasked", "dpo_loss_final_mask",
                "train_loss_first10", "train_loss_last10")  # fmt: skip
        return {k: info[k] for k in keys}
    return {}


def run_scenario(scenario: str, lab: Path, suites: dict, args: argparse.Namespace, work: Path) -> list[dict]:
    tuned = lab / scenario
    rows = [{"scenario": scenario, "method": "aligned", "param": "-", "minutes": 0.0,
             **measure_dir(lab / "aligned", lab / "aligned", suites)},
            {"scenario": scenario, "method": "tuned", "param": "-", "minutes": 0.0,
             **measure_dir(tuned, lab / "aligned", suites)}]  # fmt: skip
    print_row(rows[0])
    print_row(rows[1])
    for method, label, params in grid(args):
        out, minutes, extra = run_point(method, params, tuned, lab, work)
        metrics = measure_dir(out, lab / "aligned", suites)
        shutil.rmtree(out, ignore_errors=True)
        row = {"scenario": scenario, "method": method, "param": label, "minutes": minutes, **metrics,
               "notes": _method_notes(method, extra)}  # fmt: skip
        rows.append(row)
        print_row(row)
    return rows


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


HEADER = ("| scenario | method | parameter | refusal | refusal (held-out cat.) | new-skill acc | old-skill acc "
          "| borderline answered | minutes |")  # fmt: skip


def print_row(row: dict[str, Any]) -> None:
    cells = [
        row["scenario"],
        row["method"],
        row["param"],
        *(_fmt(row.get(k)) for k in ROWS),
        f"{row['minutes']:.2f}",
    ]
    print("| " + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    lab = Path(args.lab)
    if not (lab / "lab.json").is_file():
        print(f"no lab at {lab}: build one with `realignkit lab build --out {lab}`", file=sys.stderr)
        return 2
    suites = load_suites(lab, args.split)
    started = time.time()
    print(HEADER)
    print("|" + "---|" * 9)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_repair_") as tmp:
        for scenario in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
            rows += run_scenario(scenario, lab, suites, args, Path(tmp))
    report = {
        "lab": str(lab),
        "lab_profile": json.loads((lab / "lab.json").read_text()).get("profile"),
        "split": args.split,
        "threads": args.threads,
        "total_minutes": (time.time() - started) / 60.0,
        "rows": rows,
        "note": "minutes = repair wall time on a shared 2-core CPU (contended), evaluation excluded",
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json} ({len(rows)} rows, {report['total_minutes']:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
