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
from typing import TYPE_CHECKING, Any

import torch

from realignkit.checkpoints import (
    DEFAULT_SHARD_BYTES,
    PlannedTensor,
    StreamingModelWriter,
    copy_model_files,
)
from realignkit.common import (
    atomic_output_dir,
    check_output_not_inside_inputs,
    prepare_output_dir,
    write_manifest,
)
from realignkit.common.errors import BadInputError
from realignkit.methods.card import CardFacts, load_card_audit, write_card_files
from realignkit.methods.context import RepairContext, TensorPlan
from realignkit.methods.inputs import (
    Loader,
    ModelRef,
    ResolvedInputs,
    Sources,
    all_finite,
    resolve_device,
    resolve_inputs,
)
from realignkit.methods.registry import MethodParams, MethodSpec, get_method
from realignkit.methods.schedule import BoundParams, ParamSchedule
from realignkit.methods.self_check import SelfCheckOptions, report, self_check
from realignkit.methods.streaming import WorkItem, block_iterator, row_blocks, stream, work_items
from realignkit.methods.tensor_plan import build_plan, layout_source

if TYPE_CHECKING:
    from realignkit.checkpoints.sources import TensorSource

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
    # mergekit's `dtype`: inputs are rounded to it before the (fp32) arithmetic; None: no rounding.
    compute_dtype: str | None = None
    files_from: PathLike | None = None  # config/tokenizer donor (default: the output layout's model)
    card_audit: PathLike | None = None  # audit results.json of this very output: before/after in README.md
    reference_dirs: list[Path] = field(default_factory=list)  # where relative model references are looked up
    command: str = "repair"  # what realignkit.json and the model card say made the output


@dataclass
class RepairResult:
    out: Path
    method: str
    parameters: dict[str, Any]
    tensors: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _validate_roles(spec: MethodSpec, tuned: Sequence[ModelRef], unaligned: ModelRef | None, calibration) -> None:
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


def _return_freed_memory_to_os() -> None:
    """Pin glibc's mmap threshold: by default it grows after big frees, so later tensor-sized buffers come from
    the heap and stay resident after use, which lifts peak RSS well above the few tensors really alive."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-3, 16 << 20)  # M_MMAP_THRESHOLD = 16 MiB: row blocks reuse heap memory


def _passthrough(row: TensorPlan, aligned: TensorSource, tuned: list[TensorSource]) -> torch.Tensor:
    layout = layout_source(aligned, tuned)
    own = row.tuned_names[tuned.index(layout)] if layout in tuned else row.aligned_name
    tensor = layout.get(own if own is not None else row.out_name)
    return tensor.to(row.out_dtype) if tensor.dtype.is_floating_point else tensor


def _make_compute(
    spec: MethodSpec, bound: BoundParams, state: object, loader: Loader, aligned: TensorSource, tuned: list[TensorSource]
) -> Callable[[WorkItem, Future | None], torch.Tensor]:
    def compute(item: WorkItem, stats: Future | None) -> torch.Tensor:
        row = item.row
        if row.passthrough:
            return _passthrough(row, aligned, tuned)
        params = bound.for_row(row)
        # An elementwise method turns any NaN/Inf input entry into a NaN/Inf output entry (x·0 and inf−inf are
        # NaN), so checking its output finds every bad input in one pass; the inputs are only re-read to name one.
        check_output = spec.is_elementwise(params) and not loader.allow_nonfinite
        bundle = loader(row, item.rows, check=not check_output)
        extra = {}
        if stats is not None and (per_tensor := stats.result()) is not None:  # only methods with tensor_stats
            extra["stats"] = per_tensor(item.rows)
        result = spec.fn(
            bundle.aligned, bundle.tuned, params, unaligned=bundle.unaligned, name=row.out_name, state=state, **extra
        )
        if tuple(result.shape) != tuple(bundle.aligned.shape):
            raise RuntimeError(f"method {spec.name} returned shape {tuple(result.shape)} for {row.out_name}")
        if check_output and not all_finite(result):
            loader(row, item.rows, check=True)  # raises BadInputError naming the input
            raise RuntimeError(f"method {spec.name} produced NaN/Inf for {row.out_name} from finite inputs")
        return result.to(row.out_dtype).to("cpu")  # cast on the device first: half the bytes cross for bf16

    return compute


def _write_model(
    tmp: Path, spec: MethodSpec, bound: BoundParams, state: object, ctx: RepairContext, loader: Loader,
    opts: RepairOptions, out_dtype: torch.dtype | None,
) -> dict[str, Any]:
    """The per-tensor pass: config/tokenizer copies, then every tensor streamed into planned shards."""
    donor = Path(opts.files_from) if opts.files_from is not None else layout_source(ctx.aligned, ctx.tuned).path
    copy_model_files(donor, tmp, dtype=out_dtype)
    planned = [PlannedTensor(row.out_name, row.shape, row.out_dtype) for row in ctx.plan]
    writer = StreamingModelWriter(tmp, planned, opts.max_shard_bytes)
    compute = _make_compute(spec, bound, state, loader, ctx.aligned, ctx.tuned)
    stream(
        work_items(ctx.plan, lambda row: spec.is_elementwise(bound.for_row(row)), opts.block_elements),
        compute,
        writer,
        threads=opts.threads,
        show_progress=opts.show_progress,
        stats_job=_make_stats_job(spec, bound, loader, opts.block_elements),
    )
    return {"kind": "model", "tensors": len(ctx.plan), "shards": writer.finish(), "dtype": opts.dtype or "as inputs"}


def _wants_adapter_output(spec: MethodSpec, params: MethodParams, tuned: list[TensorSource]) -> bool:
    """`--set output=adapter`: write a modified LoRA adapter instead of a merged model (methods that can)."""
    if getattr(params, "output", "model") != "adapter":
        return False
    if spec.adapter_output is None:
        raise BadInputError(f"method {spec.name!r} cannot write an adapter; drop output=adapter")
    if len(tuned) != 1 or not tuned[0].is_adapter:
        raise BadInputError("output=adapter needs a LoRA adapter dir as the single --tuned")
    return True


def _make_stats_job(spec: MethodSpec, bound: BoundParams, loader: Loader, block_elements: int):
    if spec.tensor_stats is None:
        return None
    tensor_stats = spec.tensor_stats

    def job(row: TensorPlan) -> Any:
        blocks = block_iterator(lambda r, rows: loader(r, rows, check=False), row, block_elements)
        starts = [start for start, _ in row_blocks(row, block_elements)]
        return tensor_stats(blocks, bound.for_row(row), name=row.out_name, shape=row.shape, block_starts=starts)

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


def _validate_request(spec: MethodSpec, aligned: ModelRef | None, tuned: Sequence[ModelRef],
                      unaligned: ModelRef | None, calibration: PathLike | None, opts: RepairOptions) -> None:
    """Every check that needs no model: roles the method needs, --aligned given, dtypes, self-check settings."""
    _validate_roles(spec, tuned, unaligned, calibration)
    if aligned is None:
        raise BadInputError("--aligned is required (the safety-aligned parent of --tuned)")
    _validate_dtypes(opts)
    _validate_self_check(opts)


def _manifest_inputs(inputs: ResolvedInputs, calibration: PathLike | None) -> dict[str, Any]:
    named = {"aligned": inputs.aligned, "unaligned": inputs.unaligned, "calibration": calibration}
    named.update({f"tuned[{i}]": t for i, t in enumerate(inputs.tuned)})
    return named


def _validate_dtypes(opts: RepairOptions) -> None:
    for flag, value in (("--dtype", opts.dtype), ("compute dtype", opts.compute_dtype)):
        if value is not None and value not in OUTPUT_DTYPES:
            raise BadInputError(f"{flag} must be one of {', '.join(OUTPUT_DTYPES)} (got {value!r})")


def run_repair(
    method: str,
    params: dict[str, Any] | ParamSchedule | None = None,
    *,
    tuned: Sequence[ModelRef],
    aligned: ModelRef | None,
    out: PathLike,
    unaligned: ModelRef | None = None,
    calibration: PathLike | None = None,
    options: RepairOptions | None = None,
) -> RepairResult:
    """Apply `method` and write a loadable model dir at `out` (whole or absent). BadInputError on bad input.

    Models may be local dirs or references (`org/name[@revision]`, `MODEL+LORA`; checkpoints/references.py).
    `params` is one set of method parameters, or a schedule giving each tensor its own (methods/schedule.py).
    The output gets README.md (a model card) and, where an equivalent exists, mergekit_config.yml.
    """
    started = time.time()
    opts = options or RepairOptions()
    _return_freed_memory_to_os()
    spec = get_method(method)
    bound = BoundParams(spec, params, len(tuned))
    _validate_request(spec, aligned, tuned, unaligned, calibration, opts)
    device = resolve_device(opts.device)
    card_audit = load_card_audit(opts.card_audit) if opts.card_audit is not None else None
    unaligned = unaligned if "unaligned" in spec.needs else None
    given = [p for p in (aligned, *tuned, unaligned, calibration) if isinstance(p, str | os.PathLike)]
    check_output_not_inside_inputs(out, [p for p in given if Path(p).exists()])  # before anything is resolved
    prepare_output_dir(out, force=opts.force)
    inputs = resolve_inputs(aligned, tuned, unaligned, search_dirs=opts.reference_dirs, progress=opts.show_progress)
    check_output_not_inside_inputs(out, [inputs.aligned, *inputs.tuned, inputs.unaligned, calibration])
    sources = Sources()
    try:
        sources.open(inputs.aligned, inputs.tuned, inputs.unaligned, allow_pickle=opts.allow_pickle)
        out_dtype = OUTPUT_DTYPES[opts.dtype] if opts.dtype else None
        plan = build_plan(
            sources.aligned, sources.tuned, sources.unaligned, allow_missing=opts.allow_missing, out_dtype=out_dtype
        )
        bound.check_plan(plan)
        parsed = bound.first(plan)
        compute_dtype = OUTPUT_DTYPES[opts.compute_dtype] if opts.compute_dtype else None
        loader = Loader(sources.aligned, sources.tuned, sources.unaligned, opts.allow_nonfinite, compute_dtype, device)
        ctx = RepairContext(
            method=spec.name,
            aligned=sources.aligned,
            tuned=sources.tuned,
            unaligned=sources.unaligned,
            calibration=Path(calibration) if calibration is not None else None,
            paths={"aligned": inputs.aligned, "tuned": list(inputs.tuned), "unaligned": inputs.unaligned},
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
                output = _write_model(tmp, spec, bound, state, ctx, loader, opts, out_dtype)
            for write_extra_file in ctx.output_files.values():
                write_extra_file(tmp)
            check = _run_self_check(tmp, inputs.aligned, opts)
            ctx.manifest_extra["self_check"] = check
            facts = CardFacts(method=spec.name, parameters=bound.manifest(), fixed=bound.fixed,
                              references=inputs.references, schedule=bound.schedule, command=opts.command,
                              self_check=check, audit=card_audit, adapter_output=adapter_output)
            ctx.manifest_extra["card"] = write_card_files(tmp, facts, aligned_dir=inputs.aligned,
                                                            final_name=Path(out).name)
            extra = {
                "method": spec.name,
                "sources": {"aligned": sources.aligned.describe(), "tuned": [t.describe() for t in sources.tuned]},
                "references": inputs.references,
                "output": output,
                "device": str(device),
                "passthrough_tensors": sum(row.passthrough for row in plan),
                **ctx.manifest_extra,
            }
            write_manifest(tmp, command=opts.command, parameters=bound.manifest(),
                           inputs=_manifest_inputs(inputs, calibration), started=started, extra=extra)
    finally:
        sources.close()
    report(check)  # one loud stderr line when the output looks broken
    return RepairResult(
        out=Path(out),
        method=spec.name,
        parameters=bound.manifest(),
        tensors=len(plan),
        seconds=time.time() - started,
        extra=dict(ctx.manifest_extra),
    )
