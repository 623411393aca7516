"""realignkit vs mergekit 0.1.5 on the same mergekit recipes, run unchanged by both tools on tiny fp32 checkpoints.

    python benchmarks/bench_mergekit_compat.py                       # creates benchmarks/.venv-mergekit if needed
    python benchmarks/bench_mergekit_compat.py --mergekit-venv /tmp/mk  # an existing venv with mergekit 0.1.5

Recipes: the issue's four (linear 0.7/0.3; slerp of base_model and one model at t 0.4; task_arithmetic 0.6/0.3;
ties at density 0.4 with normalize), a recipe with a layer gradient and `filter:` lists, breadcrumbs, TIES on
bf16 copies (where magnitudes tie often), and dare_linear / dare_ties (random: compared statistically).

Checks: deterministic methods agree within fp32 rounding (max |diff| / max |value| per tensor <= 1e-6); for
TIES/breadcrumbs every entry further apart than rounding sits where the kept set is ambiguous (a magnitude tie at
the trim cut, or an exactly zero sum at the sign election); DARE agrees in distribution: the share of unchanged
entries (z-score against its binomial spread), the L1 norm of the change, and its projection on the expected
direction Σ w_i·τ_i. Output: a table on stdout and <out>/bench_mergekit_compat.json. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import format_table, machine_info, write_json, write_word_tokenizer  # noqa: E402
from bench_merge import ensure_mergekit, mergekit_version  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHAPE = {"hidden": 128, "intermediate": 256, "layers": 4, "heads": 4, "vocab": 512}
EXACT_RTOL = 1e-6  # "within fp32 rounding": max |diff| relative to the tensor's largest |value|

RECIPES: dict[str, tuple[str, str]] = {
    "linear": ("exact", """merge_method: linear
models:
  - model: {f}/tuned1
    parameters: {{weight: 0.7}}
  - model: {f}/tuned2
    parameters: {{weight: 0.3}}
dtype: float32
"""),
    "slerp": ("exact", """merge_method: slerp
base_model: {f}/aligned
models:
  - model: {f}/aligned
  - model: {f}/tuned1
parameters: {{t: 0.4}}
dtype: float32
"""),
    "task_arithmetic": ("exact", """merge_method: task_arithmetic
base_model: {f}/aligned
models:
  - model: {f}/tuned1
    parameters: {{weight: 0.6}}
  - model: {f}/tuned2
    parameters: {{weight: 0.3}}
dtype: float32
"""),
    "ties": ("ties", """merge_method: ties
base_model: {f}/aligned
models:
  - model: {f}/tuned1
    parameters: {{weight: 1.0, density: 0.4}}
  - model: {f}/tuned2
    parameters: {{weight: 1.0, density: 0.4}}
parameters: {{normalize: true}}
dtype: float32
"""),
    "gradient+filter": ("ties", """merge_method: ties
base_model: {f}/aligned
models:
  - model: {f}/tuned1
    parameters:
      weight: [{{filter: self_attn, value: [0.2, 0.9, 0.4]}}, {{value: 0.6}}]
      density: [0.2, 0.5, 0.9]
  - model: {f}/tuned2
    parameters: {{weight: 0.5, density: 0.5}}
parameters: {{normalize: [true, false], lambda: [1.0, 0.5]}}
dtype: float32
"""),
    "breadcrumbs": ("ties", """merge_method: breadcrumbs
base_model: {f}/aligned
models:
  - model: {f}/tuned1
    parameters: {{weight: 1.0, density: 0.5, gamma: 0.05}}
  - model: {f}/tuned2
    parameters: {{weight: 0.5, density: 0.6}}
dtype: float32
"""),
    "ties (bf16 inputs)": ("ties", """merge_method: ties
base_model: {f}-bf16/aligned
models:
  - model: {f}-bf16/tuned1
    parameters: {{weight: 0.5, density: 0.3}}
  - model: {f}-bf16/tuned2
    parameters: {{weight: 0.5, density: 0.3}}
parameters: {{normalize: true}}
dtype: float32
out_dtype: bfloat16
"""),
    "dare_linear": ("dare", """merge_method: dare_linear
base_model: {f}/aligned
models:
  - model: {f}/tuned1
    parameters: {{weight: 0.5, density: 0.3}}
  - model: {f}/tuned2
    parameters: {{weight: 0.5, density: 0.3}}
dtype: float32
"""),
    "dare_ties": ("dare", """merge_method: dare_ties
base_model: {f}/aligned
models:
  - model: {f}/tuned1
    parameters: {{weight: 1.0, density: 0.5}}
  - model: {f}/tuned2
    parameters: {{weight: 1.0, density: 0.5}}
dtype: float32
"""),
}


def build_family(root: Path, dtype: torch.dtype) -> None:
    """aligned ~ N(0, 0.02) (norm gains ~ 1), tuned_i = aligned + N(0, 0.002): single-file safetensors."""
    if (root / "tuned2" / "model.safetensors").is_file():
        return
    h, i, v = SHAPE["hidden"], SHAPE["intermediate"], SHAPE["vocab"]
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    for layer in range(SHAPE["layers"]):
        p = f"model.layers.{layer}."
        shapes.update({p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                       p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                       p + "mlp.down_proj.weight": (h, i)})
        shapes.update({p + f"self_attn.{n}_proj.weight": (h, h) for n in "qkvo"})
    generator = torch.Generator().manual_seed(14)
    aligned = {n: torch.randn(s, generator=generator) * 0.02 + (1.0 if len(s) == 1 else 0.0) for n, s in shapes.items()}
    models = {"aligned": aligned}
    for index in (1, 2):
        models[f"tuned{index}"] = {n: t + torch.randn(t.shape, generator=generator) * 0.002 for n, t in aligned.items()}
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
              "intermediate_size": i, "num_hidden_layers": SHAPE["layers"], "num_attention_heads": SHAPE["heads"],
              "num_key_value_heads": SHAPE["heads"], "vocab_size": v, "max_position_embeddings": 256,
              "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "torch_dtype": str(dtype).split(".")[1]}
    for role, tensors in models.items():
        (root / role).mkdir(parents=True, exist_ok=True)
        save_file({n: t.to(dtype).contiguous() for n, t in tensors.items()}, str(root / role / "model.safetensors"),
                  metadata={"format": "pt"})
        (root / role / "config.json").write_text(json.dumps(config, indent=2))
        write_word_tokenizer(root / role, v)


def run_tools(name: str, text: str, work: Path, mergekit: Path) -> dict[str, Any]:
    recipe = work / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}.yml"
    recipe.write_text(text)
    outs = {tool: work / f"{recipe.stem}-{tool}" for tool in ("realignkit", "mergekit")}
    commands = {
        "realignkit": [sys.executable, "-m", "realignkit.cli", "repair", "--config", str(recipe), "--out",
                       str(outs["realignkit"]), "--quiet", "--no-self-check"],
        "mergekit": [str(mergekit), str(recipe), str(outs["mergekit"]), "--no-write-model-card", "--quiet"],
    }
    seconds = {}
    for tool, command in commands.items():
        shutil.rmtree(outs[tool], ignore_errors=True)
        started = time.time()
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT / "src"))
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work)
        if done.returncode != 0:
            raise SystemExit(f"{tool} failed on {name}:\n{done.stderr[-3000:]}")
        seconds[tool] = round(time.time() - started, 2)
    return {"outs": outs, "seconds": seconds}


def _inputs(text: str, work: Path) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    import yaml

    recipe = yaml.safe_load(text)
    load = lambda ref: {k: v.float() for k, v in load_file(str(work / ref / "model.safetensors")).items()}  # noqa: E731
    base = load(recipe["base_model"])
    tuned = [load(m["model"]) for m in recipe["models"] if m["model"] != recipe["base_model"]]
    return base, tuned


def ambiguous_entries(base: torch.Tensor, tuned: list[torch.Tensor], density: float | None) -> torch.Tensor:
    """Entries whose merged value depends on tie-breaking. With one density for every model (the plain TIES
    recipes): a magnitude tie straddling some τ_i's top-k cut. Otherwise (gradients, breadcrumbs' two cuts): any
    magnitude that occurs more than once in its τ_i (a superset of the ties at whatever cut applies)."""
    mask = torch.zeros(base.shape, dtype=torch.bool)
    for theta in tuned:
        magnitude = (theta - base).abs().reshape(-1)
        if density is None:
            values, counts = torch.unique(magnitude, return_counts=True)
            mask |= torch.isin(magnitude, values[counts > 1]).reshape(base.shape)
            continue
        k = max(1, int(density * magnitude.numel()))
        kth = torch.topk(magnitude, k).values.min()
        if int((magnitude >= kth).sum()) > k:
            mask |= (magnitude == kth).reshape(base.shape)
    return mask


def _one_density(text: str) -> float | None:
    """The density every model uses, when the recipe has exactly one plain value for all of them."""
    import yaml

    recipe = yaml.safe_load(text)
    values = {str(m.get("parameters", {}).get("density")) for m in recipe["models"]}
    if recipe["merge_method"] != "ties" or len(values) != 1:
        return None
    try:
        return float(values.pop())
    except ValueError:
        return None


def compare_exact(ours: dict, theirs: dict) -> dict[str, Any]:
    worst = max(float((ours[n].float() - theirs[n].float()).abs().max() / theirs[n].float().abs().max().clamp_min(1e-30))
                for n in theirs)
    absolute = max(float((ours[n].float() - theirs[n].float()).abs().max()) for n in theirs)
    return {"max_abs_diff": absolute, "max_rel_diff": worst, "ok": worst <= EXACT_RTOL}


def compare_ties(ours: dict, theirs: dict, text: str, work: Path) -> dict[str, Any]:
    """Differences beyond rounding must lie on ambiguous entries (see ambiguous_entries)."""
    base, tuned = _inputs(text, work)
    differing = unexplained = 0
    rounding = 2.0**-7 if next(iter(theirs.values())).dtype == torch.bfloat16 else EXACT_RTOL
    for name in theirs:
        a, b = ours[name].float(), theirs[name].float()
        far = (a - b).abs() > rounding * torch.maximum(a.abs(), b.abs()) + 1e-7
        differing += int(far.sum())
        if far.any():
            ambiguous = ambiguous_entries(base[name], [t[name] for t in tuned], _one_density(text))
            unexplained += int((far & ~ambiguous).sum())
    total = sum(t.numel() for t in theirs.values())
    return {"entries": total, "differing": differing, "differing_not_on_a_tie": unexplained,
            "max_abs_diff": max(float((ours[n].float() - theirs[n].float()).abs().max()) for n in theirs),
            "ok": unexplained == 0}


def compare_dare(ours: dict, theirs: dict, text: str, work: Path) -> dict[str, Any]:
    base, tuned = _inputs(text, work)
    import yaml

    weights = [m["parameters"]["weight"] for m in yaml.safe_load(text)["models"]]
    stats = {}
    for tool, merged in (("realignkit", ours), ("mergekit", theirs)):
        unchanged = l1 = projection = norm = 0.0
        count = 0
        for name in merged:
            delta = merged[name].float() - base[name]
            expected = sum(w * (t[name] - base[name]) for w, t in zip(weights, tuned, strict=True))
            unchanged += float((delta == 0).sum())
            count += delta.numel()
            l1 += float(delta.abs().sum())
            projection += float((delta * expected).sum())
            norm += float((expected * expected).sum())
        stats[tool] = {"unchanged_share": unchanged / count, "l1": l1, "projection": projection / norm}
    p = (stats["realignkit"]["unchanged_share"] + stats["mergekit"]["unchanged_share"]) / 2
    spread = math.sqrt(2 * p * (1 - p) / count)
    z = (stats["realignkit"]["unchanged_share"] - stats["mergekit"]["unchanged_share"]) / spread
    l1_ratio = stats["realignkit"]["l1"] / stats["mergekit"]["l1"]
    projection_ratio = stats["realignkit"]["projection"] / stats["mergekit"]["projection"]
    ok = abs(z) < 4 and abs(l1_ratio - 1) < 0.01 and abs(projection_ratio - 1) < 0.02
    return {**stats, "unchanged_share_z": z, "l1_ratio": l1_ratio, "projection_ratio": projection_ratio, "ok": ok}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "out" / "mergekit_compat")
    parser.add_argument("--mergekit-venv", type=Path, default=REPO_ROOT / "benchmarks" / ".venv-mergekit")
    parser.add_argument("--no-install", action="store_true", help="fail instead of creating the mergekit venv")
    args = parser.parse_args(argv)
    mergekit = ensure_mergekit(args.mergekit_venv, install=not args.no_install)
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    build_family(work / "fam", torch.float32)
    build_family(work / "fam-bf16", torch.bfloat16)
    rows, results = [], {}
    for name, (kind, template) in RECIPES.items():
        text = template.format(f="fam")  # paths relative to the work dir: both tools run there
        ran = run_tools(name, text, work, mergekit)
        ours, theirs = (load_file(str(ran["outs"][t] / "model.safetensors")) for t in ("realignkit", "mergekit"))
        if set(ours) != set(theirs):
            raise SystemExit(f"{name}: tensor names differ: {sorted(set(ours) ^ set(theirs))[:5]}")
        check = {"exact": compare_exact, "ties": lambda a, b, t=text: compare_ties(a, b, t, work),
                 "dare": lambda a, b, t=text: compare_dare(a, b, t, work)}[kind](ours, theirs)
        results[name] = {"kind": kind, "recipe": text, "seconds": ran["seconds"], **check}
        rows.append([name, kind, _summary(kind, check), "yes" if check["ok"] else "NO",
                     ran["seconds"]["realignkit"], ran["seconds"]["mergekit"]])
    print(format_table(["recipe", "check", "agreement", "ok", "realignkit s", "mergekit s"], rows))
    payload = {"machine": machine_info(), "mergekit_version": mergekit_version(args.mergekit_venv), "shape": SHAPE,
               "results": results}
    write_json(work / "bench_mergekit_compat.json", payload)
    print(f"wrote {work / 'bench_mergekit_compat.json'}")
    return 0 if all(r["ok"] for r in results.values()) else 1


def _summary(kind: str, check: dict[str, Any]) -> str:
    if kind == "exact":
        return f"max |diff| {check['max_abs_diff']:.1e} (rel {check['max_rel_diff']:.1e})"
    if kind == "ties":
        return (f"{check['differing']} of {check['entries']} entries differ, {check['differing_not_on_a_tie']} "
                "not on a tie")
    return (f"unchanged {check['realignkit']['unchanged_share']:.4f} vs {check['mergekit']['unchanged_share']:.4f} "
            f"(z {check['unchanged_share_z']:+.2f}); L1 x{check['l1_ratio']:.4f}; proj x{check['projection_ratio']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
