"""Run a registered repair method over checkpoints, streaming one tensor at a time into an atomic output dir."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from realignkit.checkpoints import (
    DEFAULT_SHARD_BYTES,
    PlannedTensor,
    StreamingModelWriter,
    copy_model_files,
    open_source,
)
from realignkit.common import (
    atomic_output_dir,
    check_output_not_inside_inputs,
    prepare_output_dir,
    write_manifest,
)
from realignkit.common.errors import BadInputError
from realignkit.methods.context import RepairContext, TensorBundle, TensorPlan
from realignkit.methods.plan import build_plan, layout_source
from realignkit.methods.registry import MethodParams, MethodSpec, get_method
from realignkit.methods.self_check import SelfCheckOptions, report, self_check
from realignkit.methods.streaming import WorkItem, block_iterator, row_blocks, stream, work_items

PathLike = str | os.PathLike[str]
OUTPUT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class RepairOptions:
    dtype: str | None = None  # None: keep the inputs' dtype
    max_shard_bytes: int = DEFAULT_SHARD_BYTES
    allow_missing: bool = False
    allow_nonfinite: bool = False
    allow_pickle: bool = False
    force: bool = False
    threads: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))  # workers: read + compute
    block_elements: int = 1 << 20  # elementwise methods process big tensors in row blocks of ~this many entries
    # Where the method's math runs: "cpu", "cuda", "cuda:1", or "auto" (cuda when there is one). Tensors still
    # stream one at a time: read on the CPU, moved to the device, computed, moved back and written.
    device: str = "cpu"
    show_progress: bool = True
    # After writing: perplexity of a reference text, repaired vs aligned (methods/self_check.py).
    self_check: bool = True
    self_check_ratio: float = 2.0  # flagged as broken when ppl_repaired > ratio * ppl_aligned
    self_check_text: PathLike | None = None  # None: the shipped neutral English text


@dataclass
class RepairResult:
    out: Path
    method: str
    parameters: dict[str, Any]
    tensors: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _validate_roles(spec: MethodSpec, tuned: Sequence[PathLike], unaligned: PathLike | None, calibration) -> None:
    if not tuned:
        raise BadInputError("give at least one --tuned")
    if len(tuned) > 1 and not spec.multi_tuned:
        raise BadInputError(f"method {spec.name!r} takes exactly one --tuned (got {len(tuned)})")
    if "unaligned" in spec.needs and unaligned is None:
        raise BadInputError(f"method {spec.name!r} needs --unaligned (or --base)")
    if "calibration" in spec.needs:
        if calibration is None:
            raise BadInputError(f"method {spec.name!r} needs --calibration FILE")
        if not Path(calibration).is_file():
            raise BadInputError(f"--calibration {str(calibration)!r} is not a file")


def _validate_weights(params: MethodParams, n_tuned: int) -> None:
    weights = getattr(params, "weights", None)
    if weights is not None and len(weights) != n_tuned:
        raise BadInputError(f"weights has {len(weights)} value(s) but {n_tuned} --tuned were given")


def _all_finite(tensor: torch.Tensor) -> bool:
    """A finite sum proves every entry finite in one fast reduction; only a non-finite sum (NaN/Inf, or a rare
    overflow of finite values) needs the ~20x slower elementwise isfinite to decide."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def _return_freed_memory_to_os() -> None:
    """Pin glibc's mmap threshold: by default it grows after big frees, so later tensor-sized buffers come from
    the heap and stay resident after use, which lifts peak RSS well above the few tensors really alive."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-3, 16 << 20)  # M_MMAP_THRESHOLD = 16 MiB: row blocks reuse heap memory


def resolve_device(device: str | None) -> torch.device:
    """`--device` as a torch.device; BadInputError for a name torch does not know or a GPU that is not there."""
    name = "cpu" if device is None else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(name)
    except (RuntimeError, ValueError):
        raise BadInputError(f"--device {name!r} is not a device name (cpu, cuda, cuda:N, auto)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(f"--device {name}: no CUDA GPU is visible to torch (this torch build or machine "
                                "has none); use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise BadInputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif resolved.type != "cpu":
        raise BadInputError(f"--device {name}: only cpu and cuda are supported")
    return resolved


def to_device(bundle: TensorBundle, device: torch.device) -> TensorBundle:
    """One plan row's tensors on the device the method runs on (a no-op on the CPU)."""
    if device.type == "cpu":
        return bundle
    return TensorBundle(
        aligned=bundle.aligned.to(device, non_blocking=True),
        tuned=[t.to(device, non_blocking=True) for t in bundle.tuned],
        unaligned=None if bundle.unaligned is None else bundle.unaligned.to(device, non_blocking=True),
    )


class _Loader:
    """Loads a plan row (or a row block of it) in fp32, reading aligned once; refuses NaN/Inf unless allowed.
    The bundle it returns is on `device` (read and checked on the CPU, then moved)."""

    def __init__(self, aligned: Any, tuned: list[Any], unaligned: Any | None, allow_nonfinite: bool,
                 device: torch.device | None = None) -> None:
        self.aligned, self.tuned, self.unaligned = aligned, tuned, unaligned
        self.allow_nonfinite = allow_nonfinite
        self.device = device or torch.device("cpu")

    def _checked(self, tensor: torch.Tensor, role: str, name: str) -> torch.Tensor:
        tensor = tensor.float()
        if not self.allow_nonfinite and not _all_finite(tensor):
            raise BadInputError(f"--{role} tensor {name!r} contains NaN or Inf; pass --allow-nonfinite to proceed")
        return tensor

    @staticmethod
    def _read(source: Any, name: str, rows: tuple[int, int] | None) -> torch.Tensor:
        return source.get(name) if rows is None else source.get_rows(name, *rows)

    def __call__(self, row: TensorPlan, rows: tuple[int, int] | None = None, *, check: bool = True) -> TensorBundle:
        if not check:
            return _Loader(self.aligned, self.tuned, self.unaligned, True, self.device)(row, rows)
        assert row.aligned_name is not None
        aligned = self._checked(self._read(self.aligned, row.aligned_name, rows), "aligned", row.aligned_name)
        tuned = []
        for source, name in zip(self.tuned, row.tuned_names, strict=True):
            if name is None:  # --allow-missing: this tuned model leaves the tensor unchanged
                tuned.append(aligned)
            elif source.is_adapter:
                tuned.append(self._checked(source.tuned_from_aligned(name, aligned, rows), "tuned", name))
            else:
                tuned.append(self._checked(self._read(source, name, rows), "tuned", name))
        unaligned = None
        if self.unaligned is not None:
            name = row.unaligned_name
            unaligned = aligned if name is None else self._checked(self._read(self.unaligned, name, rows), "unaligned", name)
        return to_device(TensorBundle(aligned=aligned, tuned=tuned, unaligned=unaligned), self.device)


def _passthrough(row: TensorPlan, aligned: Any, tuned: list[Any]) -> torch.Tensor:
    layout = layout_source(aligned, tuned)
    own = row.tuned_names[tuned.index(layout)] if layout in tuned else row.aligned_name
    tensor = layout.get(own if own is not None else row.out_name)
    return tensor.to(row.out_dtype) if tensor.dtype.is_floating_point else tensor


def _make_compute(
    spec: MethodSpec, params: MethodParams, state: Any, loader: _Loader, aligned: Any, tuned: list[Any]
) -> Callable[[WorkItem, Future | None], torch.Tensor]:
    # An elementwise method turns any NaN/Inf input entry into a NaN/Inf output entry (x·0 and inf−inf are
    # NaN), so checking its output finds every bad input in one pass; the inputs are only re-read to name one.
    check_output = spec.is_elementwise(params) and not loader.allow_nonfinite

    def compute(item: WorkItem, stats: Future | None) -> torch.Tensor:
        row = item.row
        if row.passthrough:
            return _passthrough(row, aligned, tuned)
        bundle = loader(row, item.rows, check=not check_output)
        extra = {}
        if stats is not None and (per_tensor := stats.result()) is not None:  # only methods with tensor_stats
            extra["stats"] = per_tensor(item.rows)
        result = spec.fn(
            bundle.aligned, bundle.tuned, params, unaligned=bundle.unaligned, name=row.out_name, state=state, **extra
        )
        if tuple(result.shape) != tuple(bundle.aligned.shape):
            raise RuntimeError(f"method {spec.name} returned shape {tuple(result.shape)} for {row.out_name}")
        if check_output and not _all_finite(result):
            loader(row, item.rows, check=True)  # raises BadInputError naming the input
            raise RuntimeError(f"method {spec.name} produced NaN/Inf for {row.out_name} from finite inputs")
        return result.to(row.out_dtype).to("cpu")  # cast on the device first: half the bytes cross for bf16

    return compute


@dataclass
class _Sources:
    """The opened inputs; closed whatever happens."""

    aligned: Any = None
    tuned: list[Any] = field(default_factory=list)
    unaligned: Any = None

    def open(self, aligned: PathLike, tuned: Sequence[PathLike], unaligned: PathLike | None, *, allow_pickle: bool):
        self.aligned = open_source(aligned, role="aligned", allow_pickle=allow_pickle)
        if self.aligned.is_adapter:
            raise BadInputError(f"--aligned {str(aligned)!r} is an adapter; give the full aligned model")
        for path in tuned:
            self.tuned.append(open_source(path, role="tuned", aligned=self.aligned, allow_pickle=allow_pickle))
        if unaligned is not None:
            self.unaligned = open_source(unaligned, role="unaligned", allow_pickle=allow_pickle)

    def close(self) -> None:
        for source in [self.aligned, *self.tuned, self.unaligned]:
            if source is not None:
                source.close()


def _write_model(
    tmp: Path, spec: MethodSpec, params: MethodParams, state: Any, ctx: RepairContext, loader: _Loader,
    opts: RepairOptions, out_dtype: torch.dtype | None,
) -> dict[str, Any]:
    """The per-tensor pass: config/tokenizer copies, then every tensor streamed into planned shards."""
    copy_model_files(layout_source(ctx.aligned, ctx.tuned).path, tmp, dtype=out_dtype)
    planned = [PlannedTensor(row.out_name, row.shape, row.out_dtype) for row in ctx.plan]
    writer = StreamingModelWriter(tmp, planned, opts.max_shard_bytes)
    compute = _make_compute(spec, params, state, loader, ctx.aligned, ctx.tuned)
    stream(
        work_items(ctx.plan, spec.is_elementwise(params), opts.block_elements),
        compute,
        writer,
        threads=opts.threads,
        show_progress=opts.show_progress,
        stats_job=_make_stats_job(spec, params, loader, opts.block_elements),
    )
    return {"kind": "model", "tensors": len(ctx.plan), "shards": writer.finish(), "dtype": opts.dtype or "as inputs"}


def _wants_adapter_output(spec: MethodSpec, params: MethodParams, tuned: list[Any]) -> bool:
    """`--set output=adapter`: write a modified LoRA adapter instead of a merged model (methods that can)."""
    if getattr(params, "output", "model") != "adapter":
        return False
    if spec.adapter_output is None:
        raise BadInputError(f"method {spec.name!r} cannot write an adapter; drop output=adapter")
    if len(tuned) != 1 or not tuned[0].is_adapter:
        raise BadInputError("output=adapter needs a LoRA adapter dir as the single --tuned")
    return True


def _make_stats_job(spec: MethodSpec, params: MethodParams, loader: _Loader, block_elements: int):
    if spec.tensor_stats is None:
        return None
    tensor_stats = spec.tensor_stats

    def job(row: TensorPlan) -> Any:
        blocks = block_iterator(lambda r, rows: loader(r, rows, check=False), row, block_elements)
        starts = [start for start, _ in row_blocks(row, block_elements)]
        return tensor_stats(blocks, params, name=row.out_name, shape=row.shape, block_starts=starts)

    return job


def _validate_self_check(opts: RepairOptions) -> None:
    if not opts.self_check:
        return
    if not opts.self_check_ratio > 0 or opts.self_check_ratio == float("inf"):
        raise BadInputError(f"--self-check-ratio must be a positive number (got {opts.self_check_ratio})")
    if opts.self_check_text is not None and not Path(opts.self_check_text).is_file():
        raise BadInputError(f"--self-check-text {str(opts.self_check_text)!r} is not a file")


def _run_self_check(model_dir: Path, aligned: PathLike, opts: RepairOptions) -> dict[str, Any]:
    """Check the written output (still in its temp dir) against aligned; never fails the repair."""
    if not opts.self_check:
        return {"skipped": "disabled (--no-self-check)"}
    return self_check(model_dir, aligned, SelfCheckOptions(ratio=opts.self_check_ratio, text=opts.self_check_text))


def run_repair(
    method: str,
    params: dict[str, Any] | None = None,
    *,
    tuned: Sequence[PathLike],
    aligned: PathLike | None,
    out: PathLike,
    unaligned: PathLike | None = None,
    base: PathLike | None = None,
    calibration: PathLike | None = None,
    options: RepairOptions | None = None,
    command: str = "repair",
) -> RepairResult:
    """Apply `method` and write a loadable model dir at `out` (whole or absent). BadInputError on bad input."""
    started = time.time()
    opts = options or RepairOptions()
    _return_freed_memory_to_os()
    spec = get_method(method)
    parsed = spec.parse_params(dict(params or {}))
    unaligned = unaligned if unaligned is not None else base
    _validate_roles(spec, tuned, unaligned, calibration)
    _validate_weights(parsed, len(tuned))
    if aligned is None:
        raise BadInputError("--aligned is required (the safety-aligned parent of --tuned)")
    if opts.dtype is not None and opts.dtype not in OUTPUT_DTYPES:
        raise BadInputError(f"--dtype must be one of {', '.join(OUTPUT_DTYPES)} (got {opts.dtype!r})")
    _validate_self_check(opts)
    device = resolve_device(opts.device)
    uses_unaligned = "unaligned" in spec.needs
    unaligned = unaligned if uses_unaligned else None
    check_output_not_inside_inputs(out, [aligned, *tuned, unaligned, calibration])
    prepare_output_dir(out, force=opts.force)
    sources = _Sources()
    try:
        sources.open(aligned, tuned, unaligned, allow_pickle=opts.allow_pickle)
        out_dtype = OUTPUT_DTYPES[opts.dtype] if opts.dtype else None
        plan = build_plan(
            sources.aligned, sources.tuned, sources.unaligned, allow_missing=opts.allow_missing, out_dtype=out_dtype
        )
        loader = _Loader(sources.aligned, sources.tuned, sources.unaligned, opts.allow_nonfinite, device)
        ctx = RepairContext(
            method=spec.name,
            aligned=sources.aligned,
            tuned=sources.tuned,
            unaligned=sources.unaligned,
            calibration=Path(calibration) if calibration is not None else None,
            paths={"aligned": Path(aligned), "tuned": [Path(t) for t in tuned],
                   "unaligned": Path(unaligned) if unaligned is not None else None},
            plan=plan,
            loader=loader,
            show_progress=opts.show_progress,
        )
        state = spec.prepare(ctx, parsed) if spec.prepare is not None else None
        adapter_output = _wants_adapter_output(spec, parsed, sources.tuned)
        with atomic_output_dir(out, force=opts.force) as tmp:
            if adapter_output:
                assert spec.adapter_output is not None
                output = {"kind": "lora_adapter", "files": spec.adapter_output(ctx, parsed, state, tmp)}
            else:
                output = _write_model(tmp, spec, parsed, state, ctx, loader, opts, out_dtype)
            for write_extra_file in ctx.output_files.values():
                write_extra_file(tmp)
            check = _run_self_check(tmp, aligned, opts)
            ctx.manifest_extra["self_check"] = check
            extra = {
                "method": spec.name,
                "sources": {"aligned": sources.aligned.describe(), "tuned": [t.describe() for t in sources.tuned]},
                "output": output,
                "device": str(device),
                "passthrough_tensors": sum(row.passthrough for row in plan),
                **ctx.manifest_extra,
            }
            inputs = {"aligned": aligned, "unaligned": unaligned, "calibration": calibration}
            inputs.update({f"tuned[{i}]": t for i, t in enumerate(tuned)})
            write_manifest(
                tmp, command=command, parameters=parsed.model_dump(), inputs=inputs, started=started, extra=extra
            )
    finally:
        sources.close()
    report(check)  # one loud stderr line when the output looks broken
    return RepairResult(
        out=Path(out),
        method=spec.name,
        parameters=parsed.model_dump(),
        tensors=len(plan),
        seconds=time.time() - started,
        extra=dict(ctx.manifest_extra),
    )
