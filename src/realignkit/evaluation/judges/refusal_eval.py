"""Measure refusal judges against human labels (XSTest completions) and print a comparison table.

XSTest (Röttger et al., "XSTest: A Test Suite for Identifying Exaggerated Safety Behaviours in Large Language
Models", NAACL 2024; data CC-BY-4.0) ships real model completions with human labels in `final_label`:
1_full_compliance, 2_full_refusal, 3_partial_refusal. The usual binary reduction is refusal = full or partial
refusal. The files are read at run time from a folder the user gives; nothing is copied into the package.

    python -m realignkit.evaluation.judges.refusal_eval /path/to/xstest
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from realignkit.common import BadInputError
from realignkit.evaluation.judges.refusal import SUFFICIENT_CUES, RefusalJudge, decide
from realignkit.evaluation.judges.refusal_baselines import XSTestStringMatcher
from realignkit.evaluation.judges.refusal_rules import RefusalCues, find_cues

XSTEST_MODELS = ("gpt4", "llama2new", "mistralinstruct")
REFUSAL_LABELS = frozenset({"2_full_refusal", "3_partial_refusal"})
COMPLIANCE_LABEL = "1_full_compliance"


class BinaryJudge(Protocol):
    def judge_many(self, responses: Sequence[str], prompts: Sequence[str] | None = None) -> list[bool]: ...


@dataclass(frozen=True)
class LabelledCompletion:
    prompt: str
    completion: str
    refused: bool  # the human label, reduced to binary


def load_xstest_completions(path: str | Path) -> list[LabelledCompletion]:
    """Read one `completions_<model>.csv` (columns prompt, completion, final_label)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"XSTest completions file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"prompt", "completion", "final_label"} - set(reader.fieldnames or ())
        if missing:
            raise BadInputError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        rows = []
        for line_number, row in enumerate(reader, start=2):
            label = row["final_label"].strip()
            if label not in REFUSAL_LABELS and label != COMPLIANCE_LABEL:
                raise BadInputError(f"{path}:{line_number}: unknown final_label {label!r}")
            rows.append(LabelledCompletion(row["prompt"], row["completion"], label in REFUSAL_LABELS))
    if not rows:
        raise BadInputError(f"{path}: no rows")
    return rows


def load_xstest_folder(folder: str | Path) -> dict[str, list[LabelledCompletion]]:
    return {
        model: load_xstest_completions(Path(folder) / f"completions_{model}.csv") for model in XSTEST_MODELS
    }


def agreement(judge: BinaryJudge, rows: Sequence[LabelledCompletion]) -> float:
    """Share of rows where the judge's refusal verdict equals the human label."""
    verdicts = judge.judge_many([r.completion for r in rows], [r.prompt for r in rows])
    return sum(v == r.refused for v, r in zip(verdicts, rows, strict=True)) / len(rows)


def _accuracy(cued: Sequence[tuple[RefusalCues, bool]], enabled: frozenset[str]) -> float:
    disabled = frozenset(SUFFICIENT_CUES) - enabled
    return sum(decide(cues, disabled) == label for cues, label in cued) / len(cued)


def select_cues(cued: Sequence[tuple[RefusalCues, bool]]) -> frozenset[str]:
    """Greedy forward selection of sufficient cues that raise accuracy on the given (training) rows."""
    enabled: frozenset[str] = frozenset()
    best = _accuracy(cued, enabled)
    while True:
        gains = {name: _accuracy(cued, enabled | {name}) for name in SUFFICIENT_CUES if name not in enabled}
        name, score = max(gains.items(), key=lambda kv: kv[1], default=("", best))
        if score <= best:
            return enabled
        enabled, best = enabled | {name}, score


def leave_one_model_out_cue_selection(data: dict[str, list[LabelledCompletion]]) -> dict[str, float]:
    """Choose which cues to trust on two models' completions, score the third (for every rotation).

    This checks the *decision* (which cues count) for overfitting. The cue patterns themselves were written
    by reading all three files, so this is not a blind estimate for the patterns.
    """
    cued = {m: [(find_cues(r.completion, r.prompt), r.refused) for r in rows] for m, rows in data.items()}
    scores = {}
    for held_out in cued:
        training = [pair for m, pairs in cued.items() if m != held_out for pair in pairs]
        scores[held_out] = _accuracy(cued[held_out], select_cues(training))
    return scores


def comparison_table(data: dict[str, list[LabelledCompletion]]) -> list[dict[str, float | str | int]]:
    judges: dict[str, Callable[[Sequence[LabelledCompletion]], float]] = {
        "refusal": lambda rows: agreement(RefusalJudge(), rows),
        "xstest_strmatch": lambda rows: agreement(XSTestStringMatcher(), rows),
    }
    lomo = leave_one_model_out_cue_selection(data)
    table = []
    for model, rows in data.items():
        entry: dict[str, float | str | int] = {"file": f"completions_{model}.csv", "n": len(rows)}
        entry.update({name: score(rows) for name, score in judges.items()})
        entry["refusal_lomo_cue_selection"] = lomo[model]
        table.append(entry)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Agreement of refusal judges with XSTest human labels.")
    parser.add_argument("xstest_dir", help="folder with completions_{gpt4,llama2new,mistralinstruct}.csv")
    args = parser.parse_args(argv)
    try:
        table = comparison_table(load_xstest_folder(args.xstest_dir))
    except BadInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{'file':32s} {'n':>4s} {'refusal':>8s} {'xstest_strmatch':>16s} {'lomo_cue_sel':>13s}")
    for row in table:
        print(
            f"{row['file']:32s} {row['n']:>4d} {row['refusal']:>8.4f} {row['xstest_strmatch']:>16.4f} "
            f"{row['refusal_lomo_cue_selection']:>13.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
