"""realignkit vs mergekit on the same weight merges: wall time, peak RSS and numerical agreement.

    python benchmarks/bench_merge.py                      # 3 x ~270M-param bf16 Llama, 3 runs per tool
    python benchmarks/bench_merge.py --preset tiny --tools realignkit --runs 1   # code path only (smoke test)

It builds three deterministic random 3-shard bf16 Llama checkpoints (aligned + two tuned = aligned + noise),
installs mergekit into its own venv when missing (torch pinned to the CPU wheel on disk), runs both tools'
command lines on the same recipe, alternating which goes first, and measures each run in a fresh child
process. It then checks the outputs against each other and against an independent fp32 reference on a few
tensors. Results: a table on stdout and `<out>/bench_merge.json`. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402  (benchmarks/ is not a package: imported from this script's folder)
    CommandFailed,
    LlamaSpec,
    build_llama_family,
    compare_model_dirs,
    format_table,
    machine_info,
    measure_command,
    median,
    ratio,
    write_json,
)
from _merge_reference import reference_check  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
MERGEKIT_REQUIREMENT = "mergekit==0.1.5"  # the release this benchmark was checked against (its ties/TA math)
TORCH_PIN = "torch==2.13.0"  # the CPU wheel on disk; any other torch would pull a multi-GB CUDA build

SPECS: dict[str, LlamaSpec] = {
    # 271.6M parameters, 543 MB per checkpoint in bf16: the "~270M, 3-shard bf16 Llama".
    "270m": LlamaSpec(hidden=1024, intermediate=2816, layers=16, heads=16, vocab=32000, shards=3),
    # For the smoke test: the same code path in well under a second.
    "tiny": LlamaSpec(hidden=64, intermediate=128, layers=2, heads=4, vocab=256, shards=3),
}

# Same work for both tools: θ = θ_aligned + λ·Σ w_i·τ_i, and TIES at density 0.3 with the same weights.
RECIPES: dict[str, dict[str, Any]] = {
    "task_arithmetic": {"scale": 1.0, "weights": [0.5, 0.5]},
    "ties": {"density": 0.3, "scale": 1.0, "weights": [0.5, 0.5]},
}
TOOLS = ("realignkit", "mergekit")
# Ratio targets (realignkit / mergekit) from the issue; None = no target for that metric.
TARGETS: dict[str, dict[str, float | None]] = {
    "task_arithmetic": {"wall": 0.4, "rss": 0.35},
    "ties": {"wall": 0.25, "rss": None},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(SPECS), default="270m", help="checkpoint size")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per tool and method (>= 1)")
    parser.add_argument(
        "--methods", default="task_arithmetic,ties", help="comma list of: " + ",".join(RECIPES)
    )
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "out", help="work/output folder"
    )
    parser.add_argument("--mergekit-venv", type=Path, default=REPO_ROOT / "benchmarks" / ".venv-mergekit")
    parser.add_argument(
        "--no-install", action="store_true", help="fail instead of creating the mergekit venv"
    )
    parser.add_argument("--tools", default="realignkit,mergekit", help="comma list of tools to run")
    parser.add_argument(
        "--mergekit-dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="mergekit's compute dtype; float32 matches realignkit's math (fp32 compute, bf16 output)",
    )
    parser.add_argument(
        "--realignkit", default=None, help="realignkit executable (default: next to this python)"
    )
    parser.add_argument("--rebuild", action="store_true", help="regenerate checkpoints even if cached")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [m for m in args.methods if m not in RECIPES] + [t for t in args.tools if t not in TOOLS]
    if unknown or not args.methods or not args.tools or args.runs < 1:
        parser.error(f"unknown {unknown} (methods: {list(RECIPES)}, tools: {list(TOOLS)}) or --runs < 1")
    return args


# --- mergekit side ---------------------------------------------------------------------------------------


def ensure_mergekit(venv: Path, *, install: bool) -> Path:
    """Return the mergekit-yaml executable, creating its venv first when missing (torch pinned to the CPU wheel)."""
    exe = venv / "bin" / "mergekit-yaml"
    if exe.exists():
        return exe
    if not install:
        raise SystemExit(f"mergekit not found at {exe} (drop --no-install to create it)")
    print(f"[bench] creating {venv} and installing {MERGEKIT_REQUIREMENT} ({TORCH_PIN} pinned)", flush=True)
    base_python = shutil.which("python3") or sys.executable
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    constraints = venv / "constraints.txt"
    constraints.write_text(TORCH_PIN + "\n")  # a constraint, so no dependency of mergekit can swap torch
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(constraints)]
    subprocess.run([*pip, TORCH_PIN, MERGEKIT_REQUIREMENT], check=True)
    return exe


def mergekit_version(venv: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('mergekit'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "unknown"


def mergekit_config(method: str, models: dict[str, Path], dtype: str) -> dict[str, Any]:
    """mergekit YAML (as a dict) doing exactly our recipe.

    - task_arithmetic: mergekit's default normalize=False for it; with normalize it would divide by Σw.
    - ties: normalize=True (its default) is the disjoint weighted mean of the TIES paper; consensus is the sign
      of the sum of weighted trimmed deltas, as in realignkit.
    - dtype is the compute dtype: float32 like realignkit; out_dtype bfloat16 like the inputs.
    """
    recipe = RECIPES[method]
    params: dict[str, Any] = {"lambda": recipe["scale"], "normalize": method == "ties"}
    tuned = [models["tuned1"], models["tuned2"]]
    entries = []
    for path, weight in zip(tuned, recipe["weights"], strict=True):
        per_model: dict[str, float] = {"weight": weight}
        if "density" in recipe:
            per_model["density"] = recipe["density"]
        entries.append({"model": str(path), "parameters": per_model})
    return {
        "merge_method": method,
        "base_model": str(models["aligned"]),
        "models": entries,
        "parameters": params,
        "dtype": dtype,
        "out_dtype": "bfloat16",
    }


def mergekit_command(exe: Path, config_path: Path, out_dir: Path) -> list[str]:
    return [str(exe), str(config_path), str(out_dir), "--copy-tokenizer", "--quiet"]


# --- realignkit side -------------------------------------------------------------------------------------


def realignkit_executable(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    beside = Path(sys.executable).parent / "realignkit"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "realignkit.cli"]


def realignkit_command(exe: list[str], method: str, models: dict[str, Path], out_dir: Path) -> list[str]:
    recipe = RECIPES[method]
    sets: list[str] = []
    for key, value in recipe.items():
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        sets += ["--set", f"{key}={text}"]
    return [
        *exe,
        "repair",
        method,
        "--aligned",
        str(models["aligned"]),
        "--tuned",
        str(models["tuned1"]),
        "--tuned",
        str(models["tuned2"]),
        *sets,
        "--out",
        str(out_dir),
    ]


# --- measurement loop ------------------------------------------------------------------------------------


def run_tool(
    tool: str, command: list[str], out_dir: Path, scratch: Path, env: dict[str, str]
) -> dict[str, Any]:
    """One measured run into a fresh output dir (the previous run's output is deleted first, not timed)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    load_before = os.getloadavg()[0]
    try:
        result = measure_command(command, env=env, scratch_dir=scratch)
    except CommandFailed as exc:
        raise SystemExit(f"[bench] {tool} failed: {exc}") from None
    row = result.to_json()
    row["load_1min_before"] = load_before
    print(
        f"[bench]   {tool:10s} wall {result.wall_s:7.2f} s  peak RSS {result.peak_rss_mib:8.1f} MiB",
        flush=True,
    )
    return row


def run_method(method: str, args: argparse.Namespace, models: dict[str, Path], tools: dict[str, Any]) -> dict:
    """≥ args.runs measured runs per tool, alternating which tool goes first so both see similar load."""
    out_dirs = {tool: args.out / "merged" / f"{method}-{tool}" for tool in tools}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
    names = list(tools)
    for repeat in range(args.runs):
        order = names if repeat % 2 == 0 else names[::-1]
        print(f"[bench] {method}: run {repeat + 1}/{args.runs} ({' then '.join(order)})", flush=True)
        for tool in order:
            command = tools[tool](method, out_dirs[tool])
            runs[tool].append(run_tool(tool, command, out_dirs[tool], args.out / "scratch", env))
    summary = {
        tool: {
            "median_wall_s": median([r["wall_s"] for r in rows]),
            "median_peak_rss_mib": median([r["peak_rss_mib"] for r in rows]),
            # CPU time (user + sys) is far less sensitive than wall time to other jobs on a shared machine.
            "median_cpu_s": median([r["user_s"] + r["sys_s"] for r in rows]),
            "runs": rows,
        }
        for tool, rows in runs.items()
    }
    return {"recipe": RECIPES[method], "tools": summary, "out_dirs": {t: str(p) for t, p in out_dirs.items()}}


def add_ratios(method: str, result: dict[str, Any]) -> None:
    tools = result["tools"]
    if "mergekit" not in tools or "realignkit" not in tools:
        return
    ours, theirs = tools["realignkit"], tools["mergekit"]
    wall = ratio(ours["median_wall_s"], theirs["median_wall_s"])
    rss = ratio(ours["median_peak_rss_mib"], theirs["median_peak_rss_mib"])
    cpu = ratio(ours["median_cpu_s"], theirs["median_cpu_s"])
    target = TARGETS[method]
    result["ratio"] = {"wall": wall, "rss": rss, "cpu": cpu}
    result["target"] = target
    result["meets_target"] = {
        "wall": None if target["wall"] is None else bool(wall <= target["wall"]),
        "rss": None if target["rss"] is None else bool(rss <= target["rss"]),
    }


def print_table(results: dict[str, dict[str, Any]]) -> str:
    headers = [
        "method",
        "tool",
        "wall s",
        "peak RSS MiB",
        "CPU s",
        "ratio wall",
        "ratio RSS",
        "ratio CPU",
        "target",
    ]
    rows = []
    for method, result in results.items():
        for tool, stats in result["tools"].items():
            is_ours = tool == "realignkit" and "ratio" in result
            target = result.get("target", {})
            target_text = " ".join(f"{k}<={v}" for k, v in target.items() if v is not None) if is_ours else ""
            if is_ours:
                met = result["meets_target"]
                target_text += "  " + ("MET" if all(v is not False for v in met.values()) else "MISSED")
            rows.append(
                [
                    method,
                    tool,
                    stats["median_wall_s"],
                    stats["median_peak_rss_mib"],
                    stats["median_cpu_s"],
                    result["ratio"]["wall"] if is_ours else "",
                    result["ratio"]["rss"] if is_ours else "",
                    result["ratio"]["cpu"] if is_ours else "",
                    target_text,
                ]
            )
    table = format_table(headers, rows) + "\n(medians over the runs; ratio = realignkit / mergekit)"
    print(table)
    return table


def verify(method: str, result: dict[str, Any], spec: LlamaSpec, models: dict[str, Path]) -> None:
    """Numerical checks: realignkit vs mergekit on every tensor, and each tool vs an fp32 reference."""
    dirs = {tool: Path(p) for tool, p in result["out_dirs"].items()}
    checks: dict[str, Any] = {}
    if len(dirs) == 2:
        checks["realignkit_vs_mergekit"] = compare_model_dirs(dirs["realignkit"], dirs["mergekit"])
    for tool, stats in reference_check(method, RECIPES[method], spec, models, dirs).items():
        checks[f"{tool}_vs_reference"] = stats
    result["agreement"] = checks
    for name, check in checks.items():
        print(f"[bench] {method} {name}: {check['summary']}", flush=True)


def build_tools(args: argparse.Namespace, models: dict[str, Path], info: dict[str, Any]) -> dict[str, Any]:
    """tool name -> fn(method, out_dir) -> command line, for the tools picked with --tools."""
    tools: dict[str, Any] = {}
    if "realignkit" in args.tools:
        realignkit = realignkit_executable(args.realignkit)
        tools["realignkit"] = lambda method, out: realignkit_command(realignkit, method, models, out)
    if "mergekit" in args.tools:
        exe = ensure_mergekit(args.mergekit_venv, install=not args.no_install)
        info["mergekit_version"] = mergekit_version(args.mergekit_venv)
        info["mergekit_dtype"] = args.mergekit_dtype
        configs_dir = args.out / "mergekit-configs"
        configs_dir.mkdir(parents=True, exist_ok=True)

        def mergekit_run(method: str, out: Path) -> list[str]:
            config_path = configs_dir / f"{method}.yml"  # JSON is valid YAML
            config_path.write_text(json.dumps(mergekit_config(method, models, args.mergekit_dtype), indent=2))
            return mergekit_command(exe, config_path, out)

        tools["mergekit"] = mergekit_run
    return tools


def realignkit_revision() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes (the checkout is shared and moving)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "HEAD"), "src_dirty_files": dirty.splitlines() if dirty else []}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    spec = SPECS[args.preset]
    started = time.time()
    info = {
        "machine_before": machine_info(),
        "realignkit_revision": realignkit_revision(),
        "preset": args.preset,
        "spec": spec.to_json(),
    }
    print(
        f"[bench] checkpoints: {args.preset} ({spec.n_params() / 1e6:.1f}M params, bf16, {spec.shards} shards)"
    )
    models = build_llama_family(args.out / "checkpoints" / args.preset, spec, n_tuned=2, rebuild=args.rebuild)

    tools = build_tools(args, models, info)
    results: dict[str, dict[str, Any]] = {}
    for method in args.methods:
        results[method] = run_method(method, args, models, tools)
        add_ratios(method, results[method])
        verify(method, results[method], spec, models)
    table = print_table(results)
    info["machine_after"] = machine_info()
    info["realignkit_revision_after"] = realignkit_revision()  # differs from before: code moved mid-run
    info["total_s"] = time.time() - started
    write_json(args.out / "bench_merge.json", {**info, "table": table, "results": results})
    print(f"[bench] wrote {args.out / 'bench_merge.json'}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)  # only the verification runs in this process; the measured tools run as children
    sys.exit(main())
