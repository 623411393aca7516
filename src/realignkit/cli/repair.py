"""`realignkit repair METHOD ...`: parse flags (and an optional YAML recipe), then call methods.run_repair."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from realignkit.common.errors import BadInputError

EPILOG = """methods and parameters (--set KEY=VALUE):
  interpolate      alpha
  slerp            t
  task_arithmetic  scale, weights               (several --tuned)
  ties             density, scale, weights      (several --tuned)
  dare             density, scale, seed, weights (several --tuned)
  resta            beta, dare_density, seed     (needs --unaligned or --base)
  safe_lora        threshold | num_layers, targets, output=model|adapter (needs --unaligned or --base)
  antidote         alpha in (0,1), targets (module globs; default q/k/v_proj, or the adapter's modules),
                   lora_mode=adapter|delta; --calibration: JSONL of harmful prompt + response, or a saved
                   calibration_stats.safetensors (written next to every antidote output) to reuse
  somf             steps, lr, temperature, beta, final_mask=expectation|threshold,
                   merge=task_arithmetic|ties|dare, scale, density, targets (several --tuned);
                   --calibration: preference JSONL (prompt, chosen, rejected).
                   Mask memory = the targeted parameters in fp32 (x4 while training with Adam);
                   restrict it with --set targets='*q_proj,*v_proj'
example:
  realignkit repair ties --aligned chat --tuned ft1 --tuned ft2 --set density=0.3 --out repaired
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "repair",
        help="repair a fine-tuned model with a weight-space method",
        description="Repair safety after fine-tuning by combining aligned / tuned / unaligned weights, "
        "streaming one tensor at a time. Output: a loadable model dir with a realignkit.json manifest.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("method", nargs="?", help="repair method (or give it in --config)")
    parser.add_argument("--tuned", action="append", default=None, help="fine-tuned model dir or LoRA adapter dir")
    parser.add_argument("--aligned", help="the safety-aligned parent of --tuned")
    parser.add_argument("--unaligned", help="model whose difference from aligned is the safety (default: --base)")
    parser.add_argument("--base", help="pre-alignment model (default for --unaligned)")
    parser.add_argument("--calibration", help="calibration file for data-driven methods")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="method parameter, e.g. --set density=0.3 --set weights=0.5,0.5")
    parser.add_argument("--config", help="mergekit-style YAML recipe; command-line flags override it")
    parser.add_argument("--out", help="output model dir (written atomically)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="output dtype (default: inputs')")
    parser.add_argument("--shard-size", help="max shard size, e.g. 2GB (default), 500MB")
    parser.add_argument("--threads", type=int, help="worker threads for reading/computing (default: cores, at most 4)")
    parser.add_argument("--allow-missing", action="store_true", default=None,
                        help="treat tensors missing from an input as unchanged instead of failing")
    parser.add_argument("--allow-nonfinite", action="store_true", default=None, help="accept NaN/Inf in inputs")
    parser.add_argument("--allow-pickle", action="store_true", default=None,
                        help="allow pickle (.bin) checkpoints, loaded with torch weights_only=True")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)


def parse_value(text: str) -> Any:
    """YAML scalar/list parsing, plus `a,b,c` as a list of numbers."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and "," in value:
        parts = [parse_value(part.strip()) for part in value.split(",")]
        if all(isinstance(p, int | float) and not isinstance(p, bool) for p in parts):
            return parts
        return [str(p) for p in parts]
    return value


def parse_sets(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise BadInputError(f"--set expects KEY=VALUE, got {item!r}")
        values[key.strip()] = parse_value(raw.strip())
    return values


def _pick(flag: Any, recipe_value: Any, default: Any = None) -> Any:
    return flag if flag is not None else (recipe_value if recipe_value is not None else default)


def _run(args: argparse.Namespace) -> int:
    from realignkit.checkpoints import DEFAULT_SHARD_BYTES, parse_size
    from realignkit.methods.engine import RepairOptions, run_repair
    from realignkit.methods.recipe import Recipe, load_recipe

    recipe = load_recipe(args.config) if args.config else Recipe()
    method = args.method or recipe.method
    if not method:
        raise BadInputError("give a METHOD (e.g. `realignkit repair ties ...`) or `method:` in --config")
    out = _pick(args.out, recipe.out)
    if not out:
        raise BadInputError("--out DIR is required")
    params = {**recipe.parameters, **parse_sets(args.sets)}
    shard_text = _pick(args.shard_size, recipe.options.shard_size, DEFAULT_SHARD_BYTES)
    try:
        shard_bytes = parse_size(shard_text)
    except ValueError as exc:
        raise BadInputError(f"--shard-size: {exc}") from None
    if shard_bytes <= 0:
        raise BadInputError("--shard-size must be positive")
    options = RepairOptions(
        dtype=_pick(args.dtype, recipe.options.dtype),
        max_shard_bytes=shard_bytes,
        allow_missing=bool(_pick(args.allow_missing, recipe.options.allow_missing, False)),
        allow_nonfinite=bool(_pick(args.allow_nonfinite, recipe.options.allow_nonfinite, False)),
        allow_pickle=bool(_pick(args.allow_pickle, recipe.options.allow_pickle, False)),
        force=args.force,
        threads=max(1, _pick(args.threads, recipe.options.threads, min(4, os.cpu_count() or 1))),
        show_progress=not args.quiet,
    )
    result = run_repair(
        method,
        params,
        tuned=args.tuned or recipe.models.tuned,
        aligned=_pick(args.aligned, recipe.models.aligned),
        unaligned=_pick(args.unaligned, recipe.models.unaligned),
        base=_pick(args.base, recipe.models.base),
        calibration=_pick(args.calibration, recipe.calibration),
        out=out,
        options=options,
        command=" ".join(["realignkit", "repair", *sys.argv[2:]]) if sys.argv[1:2] == ["repair"] else "repair",
    )
    print(f"{result.method}: wrote {result.tensors} tensors to {result.out} in {result.seconds:.1f}s")
    return 0
