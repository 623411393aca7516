"""Method parameters for the engine: one fixed set, or a schedule that gives each tensor its own.

A schedule (mergekit recipes: gradients over layers, `filter:` lists, per-model values) is any object with
`values_for(tensor_name) -> dict` (the method's parameters for that tensor, before validation) and
`describe() -> dict` (for the manifest and model card). Each distinct set of values is validated once, and all
of them before anything is written.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from realignkit.common.errors import BadInputError
from realignkit.methods.context import TensorPlan
from realignkit.methods.registry import MethodParams, MethodSpec


class ParamSchedule(Protocol):
    def values_for(self, name: str) -> dict[str, Any]: ...

    def describe(self) -> dict[str, Any]: ...


def check_tuned_count(params: MethodParams, count: int) -> None:
    """The method's own per-model checks (lists with one value per --tuned), when it declares them."""
    check = getattr(params, "check_tuned_count", None)
    if check is not None:
        check(count)
        return
    weights = getattr(params, "weights", None)
    if weights is not None and len(weights) != count:
        raise BadInputError(f"weights has {len(weights)} value(s) but {count} --tuned were given")


class BoundParams:
    """Parameters per output tensor, validated (BadInputError with the method's one-line messages)."""

    def __init__(self, spec: MethodSpec, params: dict[str, Any] | ParamSchedule | None, n_tuned: int) -> None:
        self.spec, self.n_tuned = spec, n_tuned
        self.schedule: ParamSchedule | None = None
        self.fixed: MethodParams | None = None
        self._parsed: dict[str, MethodParams] = {}
        if params is None or isinstance(params, dict):
            self.fixed = self._parse(dict(params or {}))
        else:
            self.schedule = params

    def _parse(self, values: dict[str, Any]) -> MethodParams:
        key = json.dumps(values, sort_keys=True, default=str)
        if key not in self._parsed:
            parsed = self.spec.parse_params(values)
            check_tuned_count(parsed, self.n_tuned)
            self._parsed[key] = parsed
        return self._parsed[key]

    def for_name(self, name: str) -> MethodParams:
        if self.fixed is not None:
            return self.fixed
        assert self.schedule is not None
        return self._parse(self.schedule.values_for(name))

    def for_row(self, row: TensorPlan) -> MethodParams:
        return self.for_name(row.out_name)

    def check_plan(self, plan: list[TensorPlan]) -> None:
        """Validate every tensor's parameters now, so a bad value fails before anything is written."""
        for row in plan:
            if not row.passthrough:
                self.for_row(row)

    def first(self, plan: list[TensorPlan] | None = None) -> MethodParams:
        """The fixed parameters, or those of the first merged tensor (what whole-model hooks see)."""
        if self.fixed is not None:
            return self.fixed
        rows = [r for r in plan or [] if not r.passthrough]
        return self.for_row(rows[0]) if rows else self._parse(self.schedule.values_for(""))  # type: ignore[union-attr]

    def manifest(self) -> dict[str, Any]:
        if self.fixed is not None:
            return self.fixed.model_dump()
        assert self.schedule is not None
        return {"schedule": self.schedule.describe(), "distinct": [p.model_dump() for p in self._parsed.values()]}
