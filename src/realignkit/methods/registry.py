"""Registry of repair methods: one small file per method registers a pure tensor function here.

Interface for method authors
============================

Register a per-tensor function with its typed parameters::

    class TiesParams(MethodParams):          # pydantic, extra="forbid": unknown keys are rejected
        density: float = Field(0.2, gt=0, le=1)
        scale: float = 1.0

    @register_method("ties", params=TiesParams, needs=("aligned",), multi_tuned=True)
    def ties(aligned: Tensor, tuned: list[Tensor], params: TiesParams, *,
             unaligned: Tensor | None = None, name: str = "", state: Any = None) -> Tensor:
        ...

The per-tensor pass (run by `realignkit.methods.engine.run_repair`)
-------------------------------------------------------------------
For every output tensor name (the layout of the first full `tuned` model, or of `aligned` when every
`tuned` is a LoRA adapter) the engine calls ``fn(aligned, tuned, params, unaligned=..., name=..., state=...)``:

- every tensor argument is fp32 and has the same shape; the engine casts the result to the output dtype;
- ``tuned`` is a list with one tensor per ``--tuned`` (a LoRA adapter appears as θ_aligned + B·A·scaling);
  it has exactly one entry unless the method was registered with ``multi_tuned=True``;
- ``unaligned`` is given when "unaligned" is in ``needs`` (from ``--unaligned``, else ``--base``);
- ``name`` is the output tensor name (e.g. ``model.layers.0.self_attn.q_proj.weight``);
- ``state`` is whatever the method's ``prepare`` hook returned (``None`` without a hook);
- the function must not modify its inputs in place (the engine may reuse them).
Tensors that exist only in ``tuned`` (a VLM's vision tower) and non-float tensors are copied unchanged;
they never reach ``fn``.

``elementwise=True`` (or a function ``params -> bool``) declares that each output entry depends only on the
same entry of the inputs (interpolate, task arithmetic, RESTA without DARE). The engine may then call ``fn``
on consecutive row blocks (dim-0 slices) of a big tensor instead of the whole tensor, which bounds memory;
``name`` is still the full tensor name. Leave it False for anything that looks at a whole tensor (SLERP's
angle, DARE's random mask, projections) unless ``tensor_stats`` below covers it. For elementwise methods the
engine checks the *output* for NaN/Inf instead of every input (one pass instead of n+1), so such a function
must propagate non-finite inputs to its output (plain arithmetic does: x·0 and inf−inf are NaN).

An elementwise method that needs a statistic of the whole tensor first (TIES' magnitude threshold) also
passes ``tensor_stats=fn(blocks, params, *, name, shape, block_starts) -> per_block | None``: ``blocks()``
returns a fresh iterator over the tensor's row blocks as fp32 ``TensorBundle`` objects (call it once per
pass); ``block_starts`` lists each block's first row. ``per_block`` is a callable: the engine calls
``per_block((start, stop))`` for each block and passes the result to ``fn(..., stats=...)``. When a tensor
is small enough to go whole (or ``per_block`` is None), ``stats`` is not passed and ``fn`` computes what
it needs itself.

A method that can write a modified LoRA adapter instead of a merged model (Safe LoRA) declares an ``output``
parameter and passes ``adapter_output=fn(ctx, params, state, out_dir) -> list[file names]``; with
``output=adapter`` the engine calls it in place of the per-tensor pass (the single ``--tuned`` must be an
adapter) and still writes the manifest.

``needs`` names the roles a method requires: ``"aligned"`` (always available), ``"unaligned"``,
``"calibration"`` (a file given with ``--calibration``). A missing role is a ``BadInputError``.

Whole-model hook (``prepare``)
------------------------------
Methods that are not per-tensor pure (Safe LoRA's global "num_layers lowest" choice, Antidote's Wanda
statistics, SOMF's mask training) pass ``prepare=fn(ctx, params) -> state`` to ``register_method``.
It runs once, after all inputs were opened and checked and before the per-tensor pass. ``ctx`` is a
``RepairContext``:

- ``ctx.aligned``, ``ctx.unaligned``: ``TensorSource`` readers (``names()``, ``shape(n)``, ``dtype(n)``,
  ``get(n)`` in stored dtype; ``path``), or ``None`` when not given;
- ``ctx.tuned``: one ``TensorSource`` per ``--tuned``; LoRA adapters are ``LoraAdapterSource``
  (``is_adapter``, ``lora_factors(aligned_name) -> LoraFactors(a, b, scaling, transpose, a_key, b_key) | None``,
  ``delta(aligned_name)``, ``adapted_names()``, ``raw`` (every adapter tensor by key), ``config``);
  full models also have ``get_rows(n, start, stop)``;
- ``ctx.plan``: the list of ``TensorPlan`` rows (output name + the matching name in each role);
- ``ctx.tensors(plan_row) -> TensorBundle(aligned, tuned, unaligned)`` loads one row in fp32;
- ``ctx.paths``: ``{"aligned": Path, "tuned": [Path, ...], "unaligned": Path | None}`` for methods that
  need to load the whole model with transformers (e.g. to run calibration data through it);
- ``ctx.calibration``: the ``--calibration`` path or ``None``;
- ``ctx.manifest_extra``: a dict the method may fill; it is merged into the output ``realignkit.json``;
- ``ctx.progress(iterable, desc=..., total=...)``: a tqdm wrapper to use for loops over tensors.

Everything about reading, name maps, NaN/shape checks, dtype, sharding, atomic output and the manifest is
the engine's job; a method file only computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from realignkit.common.config import validation_problems
from realignkit.common.errors import BadInputError, closest_match
from realignkit.common.plugins import Registry

KNOWN_ROLES = ("aligned", "unaligned", "calibration")


class MethodParams(BaseModel):
    """Base class for method parameters: typed, validated, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorFn(Protocol):
    def __call__(
        self,
        aligned: torch.Tensor,
        tuned: list[torch.Tensor],
        params: Any,
        *,
        unaligned: torch.Tensor | None = None,
        name: str = "",
        state: object = None,
    ) -> torch.Tensor: ...


PrepareFn = Callable[[Any, Any], Any]  # (RepairContext, params) -> state
ElementwiseRule = bool | Callable[[Any], bool]  # fixed, or decided from the parsed params
TensorStatsFn = Callable[..., Any]  # (blocks: () -> Iterator[TensorBundle], params, *, name, shape) -> stats


@dataclass(frozen=True)
class MethodSpec:
    """Everything the engine needs to know about one registered method."""

    name: str
    fn: TensorFn
    params: type[MethodParams]
    needs: frozenset[str]
    multi_tuned: bool
    prepare: PrepareFn | None
    summary: str
    elementwise: ElementwiseRule = False
    tensor_stats: TensorStatsFn | None = None
    adapter_output: Callable[..., list[str]] | None = None

    def is_elementwise(self, params: MethodParams) -> bool:
        rule = self.elementwise
        return bool(rule(params)) if callable(rule) else bool(rule)

    def parse_params(self, values: dict[str, Any]) -> MethodParams:
        """Validate user parameters; unknown keys get a did-you-mean, bad values a one-line reason."""
        allowed = list(self.params.model_fields)
        for key in values:
            if key not in allowed:
                raise BadInputError(
                    f"unknown parameter {key!r} for method {self.name!r}{closest_match(key, allowed)}; "
                    f"known: {', '.join(allowed) or '(none)'}"
                )
        try:
            return self.params(**values)
        except ValidationError as exc:
            problem = validation_problems(exc)[0]
            raise BadInputError(f"parameter {problem.where or 'parameters'!r} of {self.name!r}: {problem.message}"
                                ) from None


BUILTIN_METHODS = ("interpolate", "slerp", "task_arithmetic", "ties", "dare", "resta", "safe_lora", "antidote", "somf",
                   "linear", "gta", "dare_linear", "dare_ties", "breadcrumbs")
# Each built-in method's module registers it; a repair imports only the module of the method it runs.
METHODS: Registry[MethodSpec] = Registry("method", modules={n: f"realignkit.methods.{n}" for n in BUILTIN_METHODS})


def register_method(
    name: str,
    *,
    params: type[MethodParams],
    needs: Sequence[str] = ("aligned",),
    multi_tuned: bool = False,
    prepare: PrepareFn | None = None,
    elementwise: ElementwiseRule = False,
    tensor_stats: TensorStatsFn | None = None,
    adapter_output: Callable[..., list[str]] | None = None,
) -> Callable[[TensorFn], TensorFn]:
    """Decorator: register `fn` as the per-tensor function of method `name`."""
    unknown = set(needs) - set(KNOWN_ROLES)
    if unknown:
        raise ValueError(f"unknown roles in needs: {sorted(unknown)}")

    def decorate(fn: TensorFn) -> TensorFn:
        doc = (fn.__doc__ or "").strip().splitlines()
        METHODS.add(name, MethodSpec(
            name=name,
            fn=fn,
            params=params,
            needs=frozenset(needs) | {"aligned"},
            multi_tuned=multi_tuned,
            prepare=prepare,
            summary=doc[0] if doc else "",
            elementwise=elementwise,
            tensor_stats=tensor_stats,
            adapter_output=adapter_output,
        ))
        return fn

    return decorate


def get_method(name: str) -> MethodSpec:
    """Look up a method by name (importing its module on first use); BadInputError with the closest name."""
    return METHODS.get(name)


def method_names() -> list[str]:
    return METHODS.names()
