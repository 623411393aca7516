"""Judge existing completions from a CSV/JSONL file (`realignkit judge`), with agreement against human labels."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.common import BadInputError, closest_match
from realignkit.common.jsonl import read_jsonl_objects
from realignkit.evaluation.judges import judge_identity, judge_verdicts, make_judge

if TYPE_CHECKING:
    from realignkit.evaluation.judges.base import Judge, Verdict

_TRUE = {"1", "true", "yes", "y", "refusal", "refused", "refuse"}
_FALSE = {"0", "false", "no", "n", "compliance", "complied", "comply"}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a .csv (header line) or .jsonl (one object per line) file."""
    if not path.is_file():
        raise BadInputError(f"--input {str(path)!r} is not a file")
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise BadInputError(f"--input {str(path)!r} is empty")
    if path.suffix == ".csv":
        return list(csv.DictReader(text.splitlines(keepends=True)))
    if path.suffix != ".jsonl":
        raise BadInputError(f"--input must be .csv or .jsonl, got {path.name!r}")
    return [row for _, row in read_jsonl_objects(path, "--input")]


def label_means_refusal(value: object, refusal_labels: Sequence[str] | None = None) -> bool:
    """A human label as refused/complied. XSTest: 2_full_refusal and 3_partial_refusal are refusals."""
    text = str(value).strip().lower()
    if refusal_labels is not None:
        return text in {label.lower() for label in refusal_labels}
    if text in _TRUE or "refus" in text:
        return True
    if text in _FALSE or "compli" in text:
        return False
    raise BadInputError(f"cannot read label {value!r} as refusal/compliance; pass --refusal-labels A,B")


def _pick_field(rows: list[dict[str, Any]], given: str | None, defaults: Sequence[str], role: str) -> str:
    columns = list(rows[0])
    if given is not None:
        if given not in columns:
            raise BadInputError(f"--{role}-field {given!r} is not a column{closest_match(given, columns)}; "
                                f"columns: {', '.join(columns)}")
        return given
    for name in defaults:
        if name in columns:
            return name
    raise BadInputError(f"no {role} column ({' or '.join(defaults)}); pass --{role}-field")


@dataclass(frozen=True)
class Columns:
    """Which columns of the input hold the prompt, the response and (optionally) a human label; None picks the
    usual names (`prompt`; `response`, `completion` or `output`). `refusal_labels`: the label values that mean
    a refusal (default: see `label_means_refusal`)."""

    prompt: str | None = None
    response: str | None = None
    label: str | None = None
    refusal_labels: Sequence[str] | None = None


def judge_file(
    input_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    columns: Columns | None = None,
    judge: str | Judge = "refusal",
    judge_options: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write each input row plus refused/judge/judge_version (and score/harmful when given) as JSONL."""
    source, target = Path(input_path), Path(out_path)
    columns = columns or Columns()
    if target.suffix != ".jsonl":
        raise BadInputError(f"--out must end in .jsonl, got {target.name!r}")
    if target.resolve() == source.resolve():
        raise BadInputError("--out must not be the --input file")
    if target.exists() and not force:
        raise BadInputError(f"--out {str(target)!r} exists; pass --force to replace it")
    rows = read_rows(source)
    if not rows:
        raise BadInputError(f"--input {str(source)!r} has no rows")
    prompts_key = _pick_field(rows, columns.prompt, ("prompt",), "prompt")
    responses_key = _pick_field(rows, columns.response, ("response", "completion", "output"), "response")
    labels_key = _pick_field(rows, columns.label, (), "label") if columns.label else None
    judge_obj = make_judge(judge, **(judge_options or {}))
    identity = judge_identity(judge_obj)
    verdicts = judge_verdicts(judge_obj, [str(r.get(responses_key) or "") for r in rows],
                              [str(r.get(prompts_key) or "") for r in rows])
    agree = 0
    by_label: dict[str, dict[str, int]] = {}
    for row, verdict in zip(rows, verdicts, strict=True):
        row.update(refused=verdict.refused, judge=identity["name"], judge_version=identity["version"])
        row.update(_verdict_fields(verdict))
        if labels_key is not None:
            human = str(row[labels_key])
            agree += label_means_refusal(human, columns.refusal_labels) == verdict.refused
            # The human label as given (e.g. XSTest's three-way label): how the judge read each kind of answer.
            counts = by_label.setdefault(human, {"n": 0, "refused": 0})
            counts["n"] += 1
            counts["refused"] += bool(verdict.refused)
    _write_jsonl_atomically(target, rows)
    summary: dict[str, Any] = {"n": len(rows), "refused": sum(v.refused for v in verdicts), "judge": identity}
    if labels_key is not None:
        summary.update(label_field=labels_key, agreement=agree / len(rows), by_label=dict(sorted(by_label.items())))
    return summary


def _verdict_fields(verdict: Verdict) -> dict[str, Any]:
    """What the judge said beyond refused, only the fields it filled in."""
    fields: dict[str, Any] = {}
    if verdict.score is not None:
        fields["score"] = verdict.score
    if verdict.harmful is not None:
        fields["harmful"] = verdict.harmful
    for name in ("label", "probability"):
        if getattr(verdict, name, None) is not None:
            fields[f"judge_{name}"] = getattr(verdict, name)
    if getattr(verdict, "categories", ()):
        fields["categories"] = list(verdict.categories)
    if getattr(verdict, "parse_error", False):
        fields["judge_parse_error"] = True
    if getattr(verdict, "prompt_harmful", None) is not None:
        fields["prompt_harmful"] = verdict.prompt_harmful
    return fields


def _write_jsonl_atomically(target: Path, rows: list[dict[str, Any]]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            for row in rows:
                stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
