"""Match tensors across aligned / tuned / unaligned by canonical name and decide what each output tensor is."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from realignkit.checkpoints import canonical_index, canonical_name
from realignkit.common.errors import BadInputError
from realignkit.methods.context import TensorPlan

if TYPE_CHECKING:
    from realignkit.checkpoints.sources import TensorSource


def layout_source(aligned: TensorSource, tuned: list[TensorSource]) -> TensorSource:
    """Output names follow the first full tuned model (a VLM keeps its names); all-adapter inputs follow aligned."""
    return next((t for t in tuned if not t.is_adapter), aligned)


def _check_shape(name: str, expected: tuple[int, ...], role: str, source: TensorSource, other: str) -> None:
    got = tuple(source.shape(other))
    if got != tuple(expected):
        raise BadInputError(
            f"shape mismatch for tensor {name!r}: {list(expected)} in the output layout but {list(got)} in --{role} "
            f"{str(source.path)!r}"
        )


def _match(index: dict[str, str], key: str, *, name: str, role: str, source: TensorSource, allow_missing: bool) -> str | None:
    found = index.get(key)
    if found is None and not allow_missing:
        raise BadInputError(
            f"tensor {name!r} is missing from --{role} {str(source.path)!r}; pass --allow-missing to treat it as unchanged"
        )
    return found


def build_plan(
    aligned: TensorSource,
    tuned: list[TensorSource],
    unaligned: TensorSource | None,
    *,
    allow_missing: bool = False,
    out_dtype: torch.dtype | None = None,
) -> list[TensorPlan]:
    """One TensorPlan per output tensor, in the layout source's order; BadInputError on mismatches."""
    layout = layout_source(aligned, tuned)
    aligned_index = canonical_index(aligned.names(), source="--aligned")
    tuned_indexes = [canonical_index(t.names(), source=f"--tuned {t.path}") for t in tuned]
    unaligned_index = canonical_index(unaligned.names(), source="--unaligned") if unaligned is not None else {}
    rows: list[TensorPlan] = []
    matched: set[str] = set()
    for name in layout.names():
        key = canonical_name(name)
        shape, dtype = tuple(layout.shape(name)), layout.dtype(name)
        aligned_name = aligned_index.get(key)
        if aligned_name is None or not dtype.is_floating_point:
            # Only in tuned (vision tower, projector) or not a weight (int buffers): copied unchanged.
            own = tuple(idx.get(key) for idx in tuned_indexes)
            kept = out_dtype if out_dtype is not None and dtype.is_floating_point else dtype
            rows.append(TensorPlan(name, aligned_name, own, None, shape, kept, passthrough=True))
            continue
        matched.add(aligned_name)
        _check_shape(name, shape, "aligned", aligned, aligned_name)
        tuned_names = []
        for source, index in zip(tuned, tuned_indexes, strict=True):
            found = _match(index, key, name=name, role="tuned", source=source, allow_missing=allow_missing)
            if found is not None:
                _check_shape(name, shape, "tuned", source, found)
            tuned_names.append(found)
        unaligned_name = None
        if unaligned is not None:
            unaligned_name = _match(
                unaligned_index, key, name=name, role="unaligned", source=unaligned, allow_missing=allow_missing
            )
            if unaligned_name is not None:
                _check_shape(name, shape, "unaligned", unaligned, unaligned_name)
        final_dtype = out_dtype if out_dtype is not None else dtype
        rows.append(TensorPlan(name, aligned_name, tuple(tuned_names), unaligned_name, shape, final_dtype, False))
    if not matched:
        raise BadInputError("--aligned and --tuned have no tensor names in common; are they the same architecture?")
    unmatched = [n for n in aligned.names() if n not in matched and aligned.dtype(n).is_floating_point]
    if unmatched and not allow_missing:
        raise BadInputError(
            f"{len(unmatched)} tensor(s) of --aligned are missing from --tuned, e.g. {unmatched[0]!r}; "
            "pass --allow-missing to skip them"
        )
    return rows
