"""Shared helpers for benchmarks: measured child runs, medians, a plain-text table, JSON output.

Benchmarks are scripts, not tests: they compare realignkit with a peer tool on the same work and print ratios.
Nothing here imports realignkit, so a benchmark can also drive a peer tool living in another venv.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Runs the command as its child and reports that child's wall time and peak RSS. It runs in a *fresh* Python
# process for every measurement because RUSAGE_CHILDREN is a high-water mark over all children a process ever
# waited for: reusing one parent would let an earlier, bigger run leak into later numbers. RUSAGE_CHILDREN also
# covers grandchildren (worker processes) once they are waited for; ru_maxrss is the largest single process.
_WRAPPER = r"""
import json, resource, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
tail = proc.stdout.decode("utf-8", "replace")[-4000:]
with open(sys.argv[1], "w") as fh:
    json.dump({"wall_s": wall, "peak_rss_kib": usage.ru_maxrss, "returncode": proc.returncode,
               "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "output_tail": tail}, fh)
"""


@dataclass(frozen=True)
class Measurement:
    """One measured child process: wall seconds, peak resident set (MiB), CPU seconds, exit code."""

    wall_s: float
    peak_rss_mib: float
    user_s: float
    sys_s: float
    returncode: int
    output_tail: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["output_tail"] = self.output_tail[-1000:]
        return data


class CommandFailed(RuntimeError):
    """A measured command exited non-zero; the message carries the end of its output."""


def measure_command(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, scratch_dir: Path, check: bool = True
) -> Measurement:
    """Run `command` in a fresh wrapper process and return its wall time and peak RSS (ru_maxrss, Linux KiB)."""
    scratch_dir.mkdir(parents=True, exist_ok=True)
    report_path = scratch_dir / f"measure-{os.getpid()}-{time.monotonic_ns()}.json"
    subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(report_path), *command],
        env=dict(env) if env is not None else None,
        check=True,
    )
    raw = json.loads(report_path.read_text())
    report_path.unlink()
    result = Measurement(
        wall_s=raw["wall_s"],
        peak_rss_mib=raw["peak_rss_kib"] / 1024.0,
        user_s=raw["user_s"],
        sys_s=raw["sys_s"],
        returncode=raw["returncode"],
        output_tail=raw["output_tail"],
    )
    if check and result.returncode != 0:
        raise CommandFailed(f"{' '.join(command)} exited {result.returncode}:\n{result.output_tail}")
    return result


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (mean of the middle two for even counts)."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, or NaN when the denominator is zero (a missing peer measurement)."""
    return numerator / denominator if denominator else float("nan")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table (floats with 2-3 significant decimals), as printed by benchmarks."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if value != value:  # NaN
                return "n/a"
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in text_rows)) if text_rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in text_rows)
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU count, load average, platform, Python."""
    return {
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Write `payload` as indented JSON, creating parent folders; NaN becomes null."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(value: Any) -> Any:
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(payload), indent=2, sort_keys=False) + "\n")


# --- deterministic random Llama checkpoints (aligned + tuned = aligned + noise) ------------------------------

CHECKPOINT_GENERATOR_VERSION = 1  # bump when the generated values change, so cached checkpoints are rebuilt


@dataclass(frozen=True)
class LlamaSpec:
    """Shape of a generated LlamaForCausalLM (untied embeddings, full multi-head attention)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    vocab: int
    shards: int
    seed: int = 1234
    weight_std: float = 0.02  # aligned weights ~ N(0, 0.02), norms ~ 1 + N(0, 0.02)
    delta_std: float = 0.002  # each tuned = aligned + N(0, 0.002): a task vector ~10% of the weights

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) in the order HF writes a Llama, which is also the shard order."""
        h, i = self.hidden, self.intermediate
        shapes: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (self.vocab, h))]
        for layer in range(self.layers):
            p = f"model.layers.{layer}."
            shapes += [(p + "input_layernorm.weight", (h,))]
            shapes += [(p + f"self_attn.{n}_proj.weight", (h, h)) for n in ("q", "k", "v", "o")]
            shapes += [(p + "post_attention_layernorm.weight", (h,))]
            shapes += [(p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h))]
            shapes += [(p + "mlp.down_proj.weight", (h, i))]
        shapes += [("model.norm.weight", (h,)), ("lm_head.weight", (self.vocab, h))]
        return shapes

    def n_params(self) -> int:
        return sum(math.prod(shape) for _, shape in self.tensor_shapes())

    def hf_config(self) -> dict[str, Any]:
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.heads,
            "vocab_size": self.vocab,
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "hidden_act": "silu",
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
            "torch_dtype": "bfloat16",
            "dtype": "bfloat16",
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "n_params": self.n_params(),
            "generator_version": CHECKPOINT_GENERATOR_VERSION,
        }


def _seeded_normal(shape: tuple[int, ...], seed: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def _tensor_seed(base_seed: int, name: str, stream: int) -> int:
    # Per-tensor seeds make every tensor reproducible on its own, independent of generation order.
    return (base_seed * 1_000_003 + zlib.crc32(name.encode()) * 17 + stream) % (2**63)


def _shard_plan(spec: LlamaSpec) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Split the tensors, in order, into `spec.shards` shards of roughly equal size."""
    shapes = spec.tensor_shapes()
    target = spec.n_params() / spec.shards
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    filled = 0
    for name, shape in shapes:
        if filled >= target * len(shards) and len(shards) < spec.shards:
            shards.append([])
        shards[-1].append((name, shape))
        filled += math.prod(shape)
    if len(shards) != spec.shards:
        raise ValueError(f"cannot split {len(shapes)} tensors into {spec.shards} shards")
    return shards


def write_word_tokenizer(model_dir: Path, vocab_size: int) -> None:
    """A word-level fast tokenizer with `vocab_size` entries, built offline (both tools copy it)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {token: index for index, token in enumerate(specials)}
    vocab.update({f"w{i}": i for i in range(len(specials), vocab_size)})
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(model_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": "<pad>",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": 2048,
    }
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def build_llama_family(
    root: Path, spec: LlamaSpec, n_tuned: int = 2, rebuild: bool = False
) -> dict[str, Path]:
    """Write `aligned` and `tuned1..n` (bf16, sharded safetensors + index, config, tokenizer) under `root`.

    Reuses what is there when `root/spec.json` matches the spec (generation takes a minute on a busy
    machine for ~270M parameters). Returns {"aligned": path, "tuned1": path, ...}.
    """
    import torch
    from safetensors.torch import save_file

    roles = ["aligned"] + [f"tuned{i + 1}" for i in range(n_tuned)]
    paths = {role: root / role for role in roles}
    stamp = root / "spec.json"
    wanted = json.dumps({**spec.to_json(), "n_tuned": n_tuned}, sort_keys=True)
    if not rebuild and stamp.exists() and stamp.read_text() == wanted:
        return paths
    shutil.rmtree(root, ignore_errors=True)
    for path in paths.values():
        path.mkdir(parents=True)
    plan = _shard_plan(spec)
    weight_maps: dict[str, dict[str, str]] = {role: {} for role in roles}
    total_bytes = 2 * spec.n_params()
    for shard_index, shard in enumerate(plan):
        file_name = f"model-{shard_index + 1:05d}-of-{len(plan):05d}.safetensors"
        tensors: dict[str, dict[str, Any]] = {role: {} for role in roles}
        for name, shape in shard:
            noise = _seeded_normal(shape, _tensor_seed(spec.seed, name, 0)) * spec.weight_std
            aligned = noise + 1.0 if len(shape) == 1 else noise  # RMSNorm gains sit around 1
            tensors["aligned"][name] = aligned.to(torch.bfloat16)
            for t in range(1, n_tuned + 1):
                delta = _seeded_normal(shape, _tensor_seed(spec.seed, name, t)) * spec.delta_std
                tensors[f"tuned{t}"][name] = (aligned + delta).to(torch.bfloat16)
            for role in roles:
                weight_maps[role][name] = file_name
        for role in roles:
            save_file(tensors[role], str(paths[role] / file_name), metadata={"format": "pt"})
    for role in roles:
        index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_maps[role]}
        (paths[role] / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        (paths[role] / "config.json").write_text(json.dumps(spec.hf_config(), indent=2))
        write_word_tokenizer(paths[role], spec.vocab)
    stamp.write_text(wanted)
    return paths


# --- reading and comparing safetensors model folders -------------------------------------------------------

# bf16 keeps 8 significant bits, so one unit in the last place is at most 2^-7 of the value: two correct fp32
# computations summed in a different order may round to neighbouring bf16 values, never further apart.
BF16_RTOL = 2.0**-7
BF16_ATOL = 1e-6


def safetensors_locations(model_dir: Path) -> dict[str, Path]:
    """tensor name -> file holding it, for every *.safetensors in a model folder."""
    from safetensors import safe_open

    locations: dict[str, Path] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            locations.update({name: file for name in handle.keys()})  # noqa: SIM118 (safe_open has no __iter__)
    return locations


def load_tensor(locations: dict[str, Path], name: str) -> Any:
    from safetensors import safe_open

    with safe_open(str(locations[name]), framework="pt") as handle:
        return handle.get_tensor(name)


def count_beyond_bf16_tolerance(a: Any, b: Any) -> int:
    """Entries of two tensors (upcast to fp32) further apart than one bf16 rounding step."""
    a32, b32 = a.float(), b.float()
    bound = BF16_ATOL + BF16_RTOL * a32.abs().maximum(b32.abs())
    return int(((a32 - b32).abs() > bound).sum())


def compare_model_dirs(dir_a: Path, dir_b: Path) -> dict[str, Any]:
    """Tensor-by-tensor agreement of two model folders: names, shapes, dtypes, max |a-b|, entries off by more
    than a bf16 rounding step. One tensor pair in memory at a time."""
    loc_a, loc_b = safetensors_locations(dir_a), safetensors_locations(dir_b)
    common = sorted(set(loc_a) & set(loc_b))
    worst_name, worst_diff, beyond, total, exact = "", 0.0, 0, 0, 0
    shape_or_dtype_mismatch: list[str] = []
    for name in common:
        a, b = load_tensor(loc_a, name), load_tensor(loc_b, name)
        if a.shape != b.shape or a.dtype != b.dtype:
            shape_or_dtype_mismatch.append(
                f"{name}: {tuple(a.shape)}/{a.dtype} vs {tuple(b.shape)}/{b.dtype}"
            )
            continue
        diff = float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
        if diff > worst_diff:
            worst_name, worst_diff = name, diff
        beyond += count_beyond_bf16_tolerance(a, b)
        exact += int((a == b).sum())
        total += a.numel()
    report = {
        "tensors_compared": len(common),
        "only_in_a": sorted(set(loc_a) - set(loc_b)),
        "only_in_b": sorted(set(loc_b) - set(loc_a)),
        "shape_or_dtype_mismatch": shape_or_dtype_mismatch,
        "max_abs_diff": worst_diff,
        "max_abs_diff_tensor": worst_name,
        "entries": total,
        "entries_bitwise_equal_fraction": exact / total if total else float("nan"),
        "entries_beyond_bf16_step": beyond,
        "entries_beyond_bf16_step_fraction": beyond / total if total else float("nan"),
    }
    report["summary"] = (
        f"{len(common)} tensors, max|diff| {worst_diff:.3g} ({worst_name or '-'}), "
        f"bitwise-equal {report['entries_bitwise_equal_fraction']:.4%}, "
        f"beyond one bf16 step {beyond} of {total} entries"
        + (
            f", names only on one side: {len(report['only_in_a'])}/{len(report['only_in_b'])}"
            if report["only_in_a"] or report["only_in_b"]
            else ""
        )
        + (f", SHAPE/DTYPE MISMATCH {len(shape_or_dtype_mismatch)}" if shape_or_dtype_mismatch else "")
    )
    return report
