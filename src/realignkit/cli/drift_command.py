"""`realignkit drift`: degradation prediction (fit | score | bench | generate). Parses and calls realignkit.drift."""

from __future__ import annotations

import argparse
import sys

from realignkit.common.errors import BadInputError


def _add_columns(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    hint = "" if defaults else " (default: the columns the model was trained with)"
    parser.add_argument("--unit-col", default="unit" if defaults else None, help=f"unit id column{hint or ' (unit)'}")
    parser.add_argument("--time-col", default="time" if defaults else None, help=f"time column{hint or ' (time)'}")
    parser.add_argument("--value-col", action="append", default=None,
                        help=f"value column, repeatable{hint or ' (value)'}")
    parser.add_argument("--condition-col", action="append", default=None,
                        help=f"operating-condition column, repeatable{hint or ' (none)'}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "drift", help="predict degradation of monitored units (lasers, fine-tuning runs) with a conditional VAE",
        description="Degradation prediction: a conditional VAE trained on healthy units flags failing ones early.",
    )
    sub = parser.add_subparsers(dest="drift_command", metavar="ACTION")
    parser.set_defaults(func=_missing_action)

    fit = sub.add_parser("fit", help="train on the healthy units of a long table (CSV/Parquet)")
    fit.add_argument("--data", required=True, help="long table: one row per unit and reading")
    fit.add_argument("--out", required=True, help="model directory to write")
    _add_columns(fit, defaults=True)
    fit.add_argument("--label-col", default=None, help="0/1 failure label per unit (default: 'failed')")
    fit.add_argument("--all-healthy", action="store_true",
                     help="every unit is healthy: train on all of them, no label column needed")
    fit.add_argument("--fail-above", type=float, default=None, help="failed if the last value is ≥ this")
    fit.add_argument("--fail-below", type=float, default=None, help="failed if the last value is < this")
    fit.add_argument("--direction", choices=("both", "increase", "decrease"), default=None,
                     help="which way values move when degrading (default: from --fail-above/--fail-below)")
    fit.add_argument("--per-unit-duration", action="store_true",
                     help="each unit's own last reading ends its test (runs of different lengths); default: "
                          "automatic, used when the healthy units' test durations differ, else one fleet-wide "
                          "duration (the rule is saved with the model and used by 'drift score')")
    fit.add_argument("--transform", choices=("none", "asinh"), default="none",
                     help="asinh: features are asinh(value / noise level), for multiplicative wear-out such as "
                          "the %% drive-current increase of lasers across operating points; values should be "
                          "changes from the first reading (default: none)")
    fit.add_argument("--epochs", type=int, default=None)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--force", action="store_true", help="replace an existing --out")
    fit.set_defaults(func=_fit)

    score = sub.add_parser("score", help="score units from the first part of their test; write unit,score,flag")
    score.add_argument("--model", required=True, help="directory written by 'drift fit'")
    score.add_argument("--data", required=True)
    score.add_argument("--horizon", type=float, default=0.5, help="fraction of the test duration seen (0.5)")
    score.add_argument("--out", required=True, help="CSV file to write")
    _add_columns(score, defaults=False)
    score.add_argument("--force", action="store_true", help="replace an existing --out")
    score.set_defaults(func=_score)

    bench = sub.add_parser("bench", help="fleets x detectors x horizons: tables (CSV/JSON/Markdown) + plots")
    bench.add_argument("--out", required=True)
    bench.add_argument("--lab", default=None, help="lab dir or fleet CSV: add the fine-tuning fleet")
    bench.add_argument("--gaas", default=None, help="GaAs long CSV (default: the copy shipped with realignkit)")
    bench.add_argument("--no-gaas", action="store_true")
    bench.add_argument("--profile", choices=("full", "quick"), default="full")
    bench.add_argument("--preset", action="append", default=None, help="laser preset(s): vcsel, edge")
    bench.add_argument("--no-laser", action="store_true", help="skip the generated laser fleets")
    bench.add_argument("--force", action="store_true")
    bench.set_defaults(func=_bench)

    gen = sub.add_parser("generate", help="write a synthetic laser aging fleet as a long CSV")
    gen.add_argument("--out", required=True, help="CSV file to write")
    gen.add_argument("--preset", default="vcsel", help="vcsel | edge | gaas")
    gen.add_argument("--units", type=int, default=200)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--mix", default="levels", help="condition mix: levels | continuous | hot | cold")
    gen.add_argument("--force", action="store_true")
    gen.set_defaults(func=_generate)


def _missing_action(args: argparse.Namespace) -> int:
    raise BadInputError("choose an action: fit, score, bench or generate (see realignkit drift --help)")


def _fit(args: argparse.Namespace) -> int:
    from realignkit.drift.commands import Columns, FitSettings, HealthLabels, fit_drift_model

    columns = Columns(args.unit_col, args.time_col, args.value_col or ["value"], args.condition_col or [])
    labels = HealthLabels(label_col=args.label_col, fail_above=args.fail_above, fail_below=args.fail_below,
                          all_healthy=args.all_healthy)
    settings = FitSettings(direction=args.direction, per_unit_duration=args.per_unit_duration or None,
                           seed=args.seed, epochs=args.epochs, transform=args.transform)
    summary = fit_drift_model(args.data, args.out, columns, labels=labels, settings=settings, force=args.force)
    rule = ("each unit's own test duration" if summary["duration"]["rule"] == "per_unit"
            else "one fleet-wide test duration")
    print(f"trained on {summary['healthy']} healthy of {summary['units']} units ({rule}) -> {args.out}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from realignkit.drift.commands import Columns, score_with_model
    from realignkit.drift.drift_model import DriftModel

    columns = None
    if any(v is not None for v in (args.unit_col, args.time_col, args.value_col, args.condition_col)):
        trained = DriftModel.load(args.model)
        columns = Columns(
            args.unit_col or trained.columns.get("unit_col", "unit"),
            args.time_col or trained.columns.get("time_col", "time"),
            args.value_col or trained.value_cols,
            args.condition_col if args.condition_col is not None else trained.condition_cols,
        )
    scores, notes = score_with_model(args.model, args.data, args.out, horizon=args.horizon, columns=columns,
                                     force=args.force)
    for note in notes:
        print(f"realignkit drift: warning: {note}", file=sys.stderr)
    print(f"{sum(s.flag for s in scores)} of {len(scores)} units flagged at horizon {args.horizon:g} -> {args.out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from realignkit.drift.commands import run_bench

    result = run_bench(args.out, profile=args.profile, lab=args.lab, gaas=args.gaas, with_gaas=not args.no_gaas,
                       presets=() if args.no_laser else tuple(args.preset or ("vcsel", "edge")), force=args.force)
    for key, s in result["summary"].items():
        print(f"{key}: F1@0.5 {s['f1_mean']:.3f} ± {s['f1_std']:.3f} (min {s['f1_min']:.3f}, {s['n_seeds']} seeds)")
    print(f"tables and plots -> {args.out}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from realignkit.drift.commands import generate_fleet_csv

    fleet = generate_fleet_csv(args.out, preset=args.preset, units=args.units, seed=args.seed, mix=args.mix,
                               force=args.force)
    failed = sum(u.label for u in fleet.units)
    print(f"{len(fleet)} units ({failed} failed) -> {args.out}; columns unit, hours, "
          f"{', '.join(fleet.value_cols + fleet.condition_cols)}, failed")
    return 0
