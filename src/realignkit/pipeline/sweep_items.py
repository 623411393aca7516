"""Which prompts a sweep asks.

- `--suite` specs (files, dirs, FORMAT:PATH) go through the audit's loaders; items are then split into
  selection/test by a seeded hash (see evaluate.split_items).
- A lab dir (`realignkit lab build`; given as a `--suite` or found because `--aligned` sits in it) brings its
  own disjoint splits: `suites/select/*.jsonl` is the selection split and `suites/test/*.jsonl` the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from realignkit.common import BadInputError
from realignkit.common.jsonl import read_jsonl_objects
from realignkit.evaluation.suite_items import SuiteItem, stratified_sample
from realignkit.pipeline.sweep_config import SweepConfig

LAB_FILE = "lab.json"
LAB_SPLITS = {"select": "selection", "test": "test"}
_ITEM_FIELDS = ("id", "prompt", "kind", "category", "answer", "suite", "meta")


def find_lab_dir(model_dir: Path) -> Path | None:
    """The lab dir holding `model_dir` (its parent with a lab.json), if any."""
    for candidate in (model_dir.parent, model_dir.parent.parent):
        if is_lab_dir(candidate):
            return candidate
    return None


def is_lab_dir(path: Path) -> bool:
    return (path / LAB_FILE).is_file() and all((path / "suites" / s).is_dir() for s in LAB_SPLITS)


def load_lab_items(lab_dir: Path, limit: int | None = None, seed: int = 0) -> list[SuiteItem]:
    """Both splits of a lab's suites (at most `limit` items per suite and split), each item tagged
    meta["split"] = selection|test."""
    items: list[SuiteItem] = []
    for folder, split in LAB_SPLITS.items():
        split_items: list[SuiteItem] = []
        for path in sorted((lab_dir / "suites" / folder).glob("*.jsonl")):
            split_items.extend(_lab_item(path, number, row, split)
                               for number, row in read_jsonl_objects(path, "lab suite"))
        items.extend(stratified_sample(split_items, limit, seed))
    if not items:
        raise BadInputError(f"lab dir {str(lab_dir)!r} has no suites/select or suites/test JSONL files")
    return items


def _lab_item(path: Path, number: int, row: dict[str, Any], split: str) -> SuiteItem:
    try:
        fields = {k: row[k] for k in _ITEM_FIELDS if k in row and row[k] is not None}
        fields.setdefault("suite", path.stem)
        fields["meta"] = dict(fields.get("meta") or {}, split=split)
        return SuiteItem(**fields)
    except (TypeError, KeyError) as exc:
        raise BadInputError(f"{path} line {number}: not a suite item ({exc})") from None


def _resolve_spec(spec: str) -> Path | None:
    path = Path(spec.removeprefix("organism:")).expanduser()
    return path if is_lab_dir(path) else None


def load_sweep_items(config: SweepConfig) -> list[SuiteItem]:
    from realignkit.evaluation.suite_files import load_suites

    specs = list(config.suites)
    if not specs:
        lab = find_lab_dir(Path(config.aligned).resolve())
        if lab is None:
            raise BadInputError(
                "no --suite given and --aligned is not inside a lab dir; pass --suite FILE (harmful + utility items)"
            )
        specs = [str(lab)]
    items: list[SuiteItem] = []
    other: list[str] = []
    for spec in specs:
        lab = _resolve_spec(spec)
        if lab is not None:
            items.extend(load_lab_items(lab, config.limit, config.seed))
        else:
            other.append(spec)
    if other:
        items.extend(load_suites(other, limit=config.limit, seed=config.seed))
    return items
