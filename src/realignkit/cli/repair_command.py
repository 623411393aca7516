"""`realignkit repair METHOD ...`: parse flags (and an optional YAML recipe), then call methods.run_repair."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import typing
from typing import TYPE_CHECKING, Any, TypeVar

from realignkit.common.errors import BadInputError

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo

    from realignkit.methods.engine import RepairOptions, RepairResult
    from realignkit.methods.recipe import RecipeOptions


T = TypeVar("T")

EPILOG = """models: local dirs, hub ids (org/name, org/name@revision, via the local Hugging Face cache; HF_HUB_OFFLINE=1
for no network) or MODEL+LORA. Every output gets a model card (README.md) and, for methods mergekit shares,
mergekit_config.yml.
after writing, every repair checks itself: the perplexity of a neutral English text under the output vs
under --aligned; above --self-check-ratio times aligned's, one WARNING line goes to stderr and
realignkit.json records self_check.broken = true (exit code unchanged unless --fail-if-broken).

each method's own parameters, paper and calibration format: realignkit repair METHOD --help
example:
  realignkit repair ties --aligned chat --tuned ft1 --tuned ft2 --set density=0.3 --out repaired
"""
FORMATS_TITLE = "calibration file formats (--calibration):"


def calibration_formats() -> dict[str, str]:
    """method -> one-line description of its --calibration file (the text lives next to the loaders)."""
    from realignkit.calibration.calibration_files import PREFERENCE_FORMAT, PROMPT_RESPONSE_FORMAT

    return {"antidote": PROMPT_RESPONSE_FORMAT, "somf": PREFERENCE_FORMAT}


def _wrap(text: str, indent: int, first: str = "") -> str:
    """`first` then `text`, wrapped at 110 columns with continuation lines indented by `indent`."""
    return textwrap.fill(text, 110, initial_indent=first.ljust(indent), subsequent_indent=" " * indent)


def method_lines() -> list[str]:
    """One line per registered method: its parameters (from its params model) and the inputs it needs."""
    from realignkit.methods.registry import get_method, method_names

    lines = []
    for name in method_names():
        spec = get_method(name)
        needs = ["several --tuned"] if spec.multi_tuned else []
        needs += ["needs --unaligned or --base"] if "unaligned" in spec.needs else []
        needs += ["needs --calibration"] if "calibration" in spec.needs else []
        text = ", ".join(spec.params.model_fields) or "(no parameters)"
        lines.append(_wrap(text + (f" ({'; '.join(needs)})" if needs else ""), 19, f"  {name}"))
    return lines


def _generic_epilog() -> str:
    lines = [_wrap(text, 12, f"  {name}") for name, text in calibration_formats().items()]
    head, sep, tail = EPILOG.partition("after writing,")
    methods = ["methods and parameters (--set KEY=VALUE):", *method_lines()]
    return ("\n".join(methods) + "\n\n" + head + "\n" + FORMATS_TITLE + "\n" + "\n".join(lines) + "\n\n" + sep
            + tail)


def _type_name(annotation: Any) -> str:
    """`float`, `adapter|delta`, `str or list of str` ... from a pydantic field annotation (None dropped)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:  # e.g. a finite float: the constraint is not the type
        return _type_name(args[0])
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if args and origin in (list, tuple):
        return f"list of {_type_name(args[0])}"
    if args:  # a union
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    return getattr(annotation, "__name__", str(annotation))


def _constraints(field: FieldInfo) -> str:
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    found = []
    for item in field.metadata:
        for attr, symbol in symbols.items():
            value = getattr(item, attr, None)
            if value is not None:
                found.append(f"{symbol} {value}")
    return ", ".join(found)


def parameter_lines(params_model: type[BaseModel]) -> list[str]:
    """One entry per parameter of a method, built from its pydantic model (type, default, bounds, description)."""
    lines = []
    for name, field in params_model.model_fields.items():
        facts = [_type_name(field.annotation)]
        if not field.is_required():
            facts.append(f"default {field.default!r}" if field.default is not None else "default: none")
        if bounds := _constraints(field):
            facts.append(bounds)
        lines.append(f"  {name + ' ':<18}({'; '.join(facts)})")
        if field.description:
            lines.append(_wrap(field.description, 20, ""))
    return lines


def method_help(name: str) -> str:
    """`realignkit repair METHOD --help`: the method's paper and formula (its module doc), the roles it needs,
    its calibration format and every parameter, generated from the registry."""
    from realignkit.methods.registry import get_method

    spec = get_method(name)
    module = sys.modules[spec.fn.__module__]
    roles = ["--tuned PATH" + (" [--tuned PATH ...]" if spec.multi_tuned else ""), "--aligned PATH"]
    if "unaligned" in spec.needs:
        roles.append("--unaligned PATH (or --base PATH)")
    if "calibration" in spec.needs:
        roles.append("--calibration FILE")
    text = [
        f"usage: realignkit repair {spec.name} {' '.join(roles)} [--set KEY=VALUE ...] --out DIR",
        "",
        (module.__doc__ or spec.summary or spec.name).strip(),
        "",
    ]
    calibration = getattr(module, "CALIBRATION_FORMAT", None) or calibration_formats().get(spec.name)
    if "calibration" in spec.needs and calibration:
        text += [_wrap(calibration, 2, "calibration file (--calibration): "), ""]
    text += ["parameters (--set KEY=VALUE):", *parameter_lines(spec.params), ""]
    text.append("common options (--dtype, --threads, self-check, ...): realignkit repair --help")
    return "\n".join(text)


class _HelpAction(argparse.Action):
    """-h/--help: the method's own help after `repair METHOD`, else the generic help (built lazily: the
    calibration formats and method registry import torch, which `realignkit --help` must not pay for)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:  # fmt: skip
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        method = getattr(namespace, "method", None)
        if method:
            try:
                text = method_help(method)
            except BadInputError as exc:
                parser.exit(2, f"realignkit repair: error: {exc}\n")
            print(text)
        else:
            parser.epilog = _generic_epilog()
            parser.print_help()
        parser.exit()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "repair",
        help="repair a fine-tuned model with a weight-space method",
        description="Repair safety after fine-tuning by combining aligned / tuned / unaligned weights, "
        "streaming one tensor at a time. Output: a loadable model dir with a realignkit.json manifest.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    parser.add_argument("-h", "--help", action=_HelpAction,
                        help="show this help; `repair METHOD --help` shows the method's parameters")
    parser.add_argument("method", nargs="?", help="repair method (or give it in --config)")
    parser.add_argument("--tuned", action="append", default=None, help="fine-tuned model dir or LoRA adapter dir")
    parser.add_argument("--aligned", help="the safety-aligned parent of --tuned")
    parser.add_argument("--unaligned", help="model whose difference from aligned is the safety (default: --base)")
    parser.add_argument("--base", help="pre-alignment model (default for --unaligned)")
    parser.add_argument("--calibration", help="calibration file for data-driven methods")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="method parameter, e.g. --set density=0.3 --set weights=0.5,0.5")
    parser.add_argument("--config", help="YAML recipe: realignkit's own (flags override it) or a mergekit recipe "
                        "(merge_method: linear, slerp, task_arithmetic, ties, dare_linear, dare_ties, breadcrumbs)")
    parser.add_argument("--out", help="output model dir (written atomically)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="output dtype (default: inputs')")
    parser.add_argument("--shard-size", help="max shard size, e.g. 2GB (default), 500MB")
    parser.add_argument("--threads", type=int, help="worker threads for reading/computing (default: cores, at most 4)")
    parser.add_argument("--device", default="cpu", help="where the merge math runs: cpu (default), cuda, cuda:N, auto; "
                        "tensors still stream one at a time")
    parser.add_argument("--allow-missing", action="store_true", default=None,
                        help="treat tensors missing from an input as unchanged instead of failing")
    parser.add_argument("--allow-nonfinite", action="store_true", default=None, help="accept NaN/Inf in inputs")
    parser.add_argument("--allow-pickle", action="store_true", default=None,
                        help="allow pickle (.bin) checkpoints, loaded with torch weights_only=True")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-self-check", dest="self_check", action="store_false",
                        help="skip the perplexity check of the output against --aligned")
    parser.add_argument("--self-check-ratio", type=float, default=2.0, metavar="R",
                        help="flag the output as broken when its perplexity exceeds R x aligned's (default 2)")
    parser.add_argument("--self-check-text", metavar="FILE",
                        help="UTF-8 text for the self-check (default: a neutral English text shipped with realignkit)")
    parser.add_argument("--card-audit", metavar="RESULTS_JSON",
                        help="audit results.json of this output (realignkit audit OUT --baseline TUNED): its "
                        "before/after figures go into the model card (README.md)")
    parser.add_argument("--push-to-hub", metavar="REPO",
                        help="after writing, upload the output to this Hugging Face Hub model repo (token from "
                        "HF_TOKEN; HF_ENDPOINT for another hub)")
    parser.add_argument("--fail-if-broken", action="store_true",
                        help="exit 1 when the self-check flags the output as broken (it is still written)")
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


def _pick(flag: T | None, recipe_value: T | None, default: T | None = None) -> T | None:
    return flag if flag is not None else (recipe_value if recipe_value is not None else default)


def _options(args: argparse.Namespace, recipe_options: RecipeOptions) -> RepairOptions:
    """RepairOptions from the flags, falling back to the recipe's `options:` (our recipe format)."""
    from realignkit.checkpoints import DEFAULT_SHARD_BYTES, parse_size
    from realignkit.methods.engine import RepairOptions

    shard_text = _pick(args.shard_size, recipe_options.shard_size, DEFAULT_SHARD_BYTES)
    try:
        shard_bytes = parse_size(shard_text)
    except ValueError as exc:
        raise BadInputError(f"--shard-size: {exc}") from None
    if shard_bytes <= 0:
        raise BadInputError("--shard-size must be positive")
    return RepairOptions(
        dtype=_pick(args.dtype, recipe_options.dtype),
        max_shard_bytes=shard_bytes,
        allow_missing=bool(_pick(args.allow_missing, recipe_options.allow_missing, False)),
        allow_nonfinite=bool(_pick(args.allow_nonfinite, recipe_options.allow_nonfinite, False)),
        allow_pickle=bool(_pick(args.allow_pickle, recipe_options.allow_pickle, False)),
        force=args.force,
        threads=max(1, _pick(args.threads, recipe_options.threads, min(4, os.cpu_count() or 1))),
        show_progress=not args.quiet,
        device=args.device,
        self_check=args.self_check,
        self_check_ratio=args.self_check_ratio,
        self_check_text=args.self_check_text,
        card_audit=args.card_audit,
        command=_command(),
    )


def _command() -> str:
    return " ".join(["realignkit", "repair", *sys.argv[2:]]) if sys.argv[1:2] == ["repair"] else "repair"


def _run_mergekit(args: argparse.Namespace) -> tuple[RepairResult, str]:
    """`--config` is a mergekit recipe: it names the method, models and parameters itself."""
    from realignkit.methods.mergekit_run import run_mergekit_recipe
    from realignkit.methods.recipe import RecipeOptions

    given = [flag for flag, value in (("METHOD", args.method), ("--tuned", args.tuned), ("--aligned", args.aligned),
                                      ("--base", args.base), ("--unaligned", args.unaligned),
                                      ("--calibration", args.calibration), ("--set", args.sets)) if value]
    if given:
        raise BadInputError(f"--config {args.config!r} is a mergekit recipe, which names its method, models and "
                            f"parameters itself; drop {given[0]}")
    if not args.out:
        raise BadInputError("--out DIR is required (a mergekit recipe has no output path)")
    result, run = run_mergekit_recipe(args.config, args.out, _options(args, RecipeOptions()))
    for warning in run.warnings:
        print(f"realignkit repair: warning: {warning}", file=sys.stderr)
    return result, f"{run.schedule.config.merge_method} (mergekit recipe)"


def _run_own(args: argparse.Namespace) -> tuple[RepairResult, str]:
    from realignkit.methods.engine import run_repair
    from realignkit.methods.recipe import Recipe, load_recipe

    recipe = load_recipe(args.config) if args.config else Recipe()
    method = args.method or recipe.method
    if not method:
        raise BadInputError("give a METHOD (e.g. `realignkit repair ties ...`) or `method:` in --config")
    out = _pick(args.out, recipe.out)
    if not out:
        raise BadInputError("--out DIR is required")
    params = {**recipe.parameters, **parse_sets(args.sets)}
    result = run_repair(
        method,
        params,
        tuned=args.tuned or recipe.models.tuned,
        aligned=_pick(args.aligned, recipe.models.aligned),
        unaligned=_pick(_pick(args.unaligned, recipe.models.unaligned), _pick(args.base, recipe.models.base)),
        calibration=_pick(args.calibration, recipe.calibration),
        out=out,
        options=_options(args, recipe.options),
    )
    return result, result.method


def _run(args: argparse.Namespace) -> int:
    from realignkit.methods.mergekit_recipe import is_mergekit_recipe
    from realignkit.methods.mergekit_run import read_yaml

    if args.fail_if_broken and not args.self_check:
        raise BadInputError("--fail-if-broken needs the self-check; drop --no-self-check")
    if args.push_to_hub:
        from realignkit.checkpoints.hub_push import check_push_possible

        check_push_possible(args.push_to_hub)
    mergekit = bool(args.config) and is_mergekit_recipe(read_yaml(args.config))
    result, label = _run_mergekit(args) if mergekit else _run_own(args)
    print(f"{label}: wrote {result.tensors} tensors to {result.out} in {result.seconds:.1f}s")
    if args.push_to_hub:
        from realignkit.checkpoints.hub_push import push_folder

        print(f"pushed {result.out} to {args.push_to_hub}: {push_folder(result.out, args.push_to_hub)}")
    check = result.extra.get("self_check") or {}
    return 1 if args.fail_if_broken and check.get("broken") else 0
