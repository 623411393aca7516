"""The one `--judge` option set shared by audit, sweep, demo and judge."""

from __future__ import annotations

import argparse
from typing import Any

from realignkit.cli.options import vllm_settings_given

JUDGE_HELP = ("refusal (default: rules + a calibrated probe on SmolLM2 hidden states), rules (rules only), rubric, "
              "strongreject (OpenAI-compatible endpoint), classifier:PATH, llama_guard:PATH, wildguard:PATH, "
              "harmbench:PATH (a local dir or a hub id)")
MODEL_JUDGES = ("classifier", "llama_guard", "wildguard", "harmbench")
ENDPOINT_JUDGES = ("rubric", "strongreject")


def add_judge_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                        default: str | None = "refusal", endpoint_limits: bool = True) -> None:
    parser.add_argument("--judge", default=default, help=JUDGE_HELP)
    parser.add_argument("--judge-model", metavar="PATH_OR_ID", help="checkpoint of a model judge (or NAME:PATH)")
    parser.add_argument("--judge-backend", choices=("transformers", "vllm"),
                        help="engine of a model judge (default transformers; vllm when installed)")
    parser.add_argument("--judge-device", help="device of a model judge (default: cuda if available)")
    parser.add_argument("--judge-api-base", help="rubric/strongreject endpoint (default $OPENAI_BASE_URL)")
    parser.add_argument("--judge-api-model", help="rubric/strongreject model name on the endpoint")
    parser.add_argument("--judge-api-key-env", help="env variable with the judge's API key (default OPENAI_API_KEY)")
    if endpoint_limits:
        parser.add_argument("--timeout", type=float, default=60.0, help="seconds per endpoint request")
        parser.add_argument("--max-retries", type=int, default=3, help="retries per endpoint request")


def judge_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Options for make_judge; only those the chosen judge takes (None values are dropped by make_judge)."""
    if args.judge is None:
        return {}
    name = args.judge.split(":", 1)[0].replace("-", "_")
    if name in MODEL_JUDGES:
        options: dict[str, Any] = {"model_path": args.judge_model}
        # --backend vllm makes vLLM the model judge's engine too, unless --judge-backend says otherwise.
        backend = args.judge_backend or ("vllm" if getattr(args, "backend", None) == "vllm" else None)
        if name != "classifier":
            options.update(backend=backend, device=args.judge_device)
        elif backend == "vllm":
            options["backend"] = "vllm"
        if backend == "vllm":
            options["vllm"] = vllm_settings_given(args) or None
        return options
    if name in ENDPOINT_JUDGES:
        return {"api_base": args.judge_api_base, "api_model": args.judge_api_model,
                "api_key_env": args.judge_api_key_env, "timeout": getattr(args, "timeout", None),
                "max_retries": getattr(args, "max_retries", None)}
    return {}
