"""Suite file loaders: generic JSONL, HarmBench CSV, AdvBench CSV, HEx-PHI folder, XSTest CSV, organism lab dir.

Real benchmark prompts are read from the user's files at run time; nothing is bundled. Every problem with a
file raises BadInputError naming the file and, where it applies, the line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from realignkit.common import BadInputError, closest_match
from realignkit.common.jsonl import read_jsonl_objects
from realignkit.evaluation.suite_items import SUITE_KINDS, SuiteItem, stratified_sample

# HEx-PHI's 11 categories in the order of its category_N.csv files (Qi et al. 2023).
HEX_PHI_CATEGORIES = (
    "illegal_activity",
    "child_abuse_content",
    "hate_harass_violence",
    "malware",
    "physical_harm",
    "economic_harm",
    "fraud_deception",
    "adult_content",
    "political_campaigning",
    "privacy_violation_activity",
    "tailored_financial_advice",
)
JSONL_FIELDS = ("id", "prompt", "kind", "category", "answer", "suite", "meta", "split")


def _text_lines(path: Path, keepends: bool = False) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"suite file {str(path)!r} is not UTF-8 text ({exc.reason})") from exc
    if not text.strip():
        raise BadInputError(f"suite file {str(path)!r} is empty")
    return text.splitlines(keepends=keepends)


def _csv_rows(path: Path) -> list[list[str]]:
    return [row for _, row in _numbered_csv_rows(path)]


def _numbered_csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number where the row starts, cells) for every CSV row."""
    lines = _text_lines(path, keepends=True)  # keep newlines inside quoted multi-line cells
    reader = csv.reader(lines)
    numbered = []
    start = 1
    try:
        for row in reader:
            numbered.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise BadInputError(f"{path} line {reader.line_num}: malformed CSV ({exc})") from exc
    return numbered


def load_jsonl(path: Path, suite: str | None = None) -> list[SuiteItem]:
    """Generic JSONL: one object per line with `prompt`, `kind`, optional `id`, `category`, `answer`, `meta`, `split`."""
    suite_name = suite or path.stem
    return [_jsonl_item(path, number, row, suite_name) for number, row in read_jsonl_objects(path, "suite")]


def _jsonl_item(path: Path, number: int, row: dict[str, Any], suite: str) -> SuiteItem:
    where = f"{path} line {number}"
    for key in row:
        if key not in JSONL_FIELDS:
            raise BadInputError(f"{where}: unknown field {key!r}{closest_match(key, JSONL_FIELDS)}")
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInputError(f"{where}: 'prompt' must be a non-empty string")
    kind = row.get("kind")
    if kind not in SUITE_KINDS:
        raise BadInputError(f"{where}: 'kind' must be one of {', '.join(SUITE_KINDS)}, got {kind!r}")
    answer = row.get("answer")
    if answer is not None and not isinstance(answer, (str, int, float)):
        raise BadInputError(f"{where}: 'answer' must be a string or number")
    if kind == "utility" and answer is None:
        raise BadInputError(f"{where}: utility items need an 'answer'")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise BadInputError(f"{where}: 'meta' must be an object")
    if row.get("split") is not None:  # the lab marks its held-out splits (select/test)
        meta = {**meta, "split": row["split"]}
    return SuiteItem(
        id=str(row.get("id", number)),
        prompt=prompt,
        kind=kind,
        category=str(row.get("category") or "uncategorized"),
        answer=None if answer is None else str(answer),
        suite=str(row.get("suite") or suite),
        meta=meta,
    )


def _header_index(path: Path, header: list[str], required: tuple[str, ...]) -> dict[str, int]:
    index = {name.strip(): i for i, name in enumerate(header)}
    for name in required:
        if name not in index:
            raise BadInputError(f"{path}: missing column {name!r}{closest_match(name, index)}")
    return index


def _cell(path: Path, number: int, row: list[str], index: dict[str, int], name: str) -> str:
    position = index[name]
    if position >= len(row):
        raise BadInputError(f"{path} line {number}: row has {len(row)} cells, column {name!r} is missing")
    return row[position].strip()


def load_harmbench(path: Path, suite: str | None = None) -> list[SuiteItem]:
    """HarmBench behaviours CSV; contextual behaviours get their context string prepended (HarmBench style)."""
    rows = _numbered_csv_rows(path)
    index = _header_index(path, rows[0][1], ("Behavior", "SemanticCategory"))
    items = []
    for number, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        behavior = _cell(path, number, row, index, "Behavior")
        if not behavior:
            raise BadInputError(f"{path} line {number}: empty Behavior")
        context = _cell(path, number, row, index, "ContextString") if "ContextString" in index else ""
        prompt = f"{context}\n\n---\n\n{behavior}" if context else behavior
        item_id = _cell(path, number, row, index, "BehaviorID") if "BehaviorID" in index else str(number)
        functional = _cell(path, number, row, index, "FunctionalCategory") if "FunctionalCategory" in index else ""
        items.append(
            SuiteItem(
                id=item_id or str(number),
                prompt=prompt,
                kind="harmful",
                category=_cell(path, number, row, index, "SemanticCategory") or "uncategorized",
                suite=suite or "harmbench",
                meta={"functional_category": functional} if functional else {},
            )
        )
    return _non_empty(path, items)


def load_advbench(path: Path, suite: str | None = None) -> list[SuiteItem]:
    """AdvBench harmful behaviours: one instruction per row (no header; a `goal,target` header is skipped)."""
    rows = _numbered_csv_rows(path)
    has_header = bool(rows[0][1]) and rows[0][1][0].strip().lower() == "goal"
    items = []
    for number, row in rows[1 if has_header else 0 :]:
        if not any(cell.strip() for cell in row):
            continue
        prompt = row[0].strip()
        if not prompt:
            raise BadInputError(f"{path} line {number}: empty prompt")
        items.append(SuiteItem(id=str(number), prompt=prompt, kind="harmful", category="advbench",
                               suite=suite or "advbench"))
    return _non_empty(path, items)


def load_xstest(path: Path, suite: str | None = None) -> list[SuiteItem]:
    """XSTest prompts CSV: label safe -> over_refusal (should be answered), unsafe -> harmful."""
    rows = _numbered_csv_rows(path)
    index = _header_index(path, rows[0][1], ("prompt", "label"))
    kinds = {"safe": "over_refusal", "unsafe": "harmful"}
    items = []
    for number, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        label = _cell(path, number, row, index, "label").lower()
        if label not in kinds:
            raise BadInputError(f"{path} line {number}: label must be 'safe' or 'unsafe', got {label!r}")
        prompt = _cell(path, number, row, index, "prompt")
        if not prompt:
            raise BadInputError(f"{path} line {number}: empty prompt")
        category = _cell(path, number, row, index, "type") if "type" in index else label
        item_id = _cell(path, number, row, index, "id") if "id" in index else str(number)
        items.append(SuiteItem(id=item_id or str(number), prompt=prompt, kind=kinds[label],
                               category=category or label, suite=suite or "xstest"))
    return _non_empty(path, items)


def load_hex_phi_dir(path: Path, suite: str | None = None) -> list[SuiteItem]:
    """HEx-PHI-format folder: one CSV per category, one prompt per row, category from the file name."""
    files = sorted(path.glob("*.csv"), key=_natural_key)
    if not files:
        raise BadInputError(f"folder {str(path)!r} has no .csv files (expected HEx-PHI-format category files)")
    items = []
    for file in files:
        category = _hex_phi_category(file.stem)
        for number, row in _numbered_csv_rows(file):
            if not any(cell.strip() for cell in row):
                continue
            prompt = row[0].strip()
            if not prompt:
                raise BadInputError(f"{file} line {number}: empty prompt")
            items.append(SuiteItem(id=f"{file.stem}-{number}", prompt=prompt, kind="harmful", category=category,
                                   suite=suite or "hex-phi"))
    return _non_empty(path, items)


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.stem)]


def _hex_phi_category(stem: str) -> str:
    match = re.fullmatch(r"category_(\d+)", stem)
    if match and 1 <= int(match.group(1)) <= len(HEX_PHI_CATEGORIES):
        return HEX_PHI_CATEGORIES[int(match.group(1)) - 1]
    return stem


def load_organism(lab_dir: Path) -> list[SuiteItem]:
    """The lab's built-in suites: LABDIR/suites/*.jsonl in the generic JSONL format, one suite per file."""
    suites_dir = lab_dir / "suites"
    files = sorted(suites_dir.glob("*.jsonl")) if suites_dir.is_dir() else []
    if not files:
        raise BadInputError(f"{str(lab_dir)!r} has no suites/*.jsonl; is it a lab dir from `realignkit lab build`?")
    items = []
    for file in files:
        items.extend(load_jsonl(file))
    return items


def _non_empty(path: Path, items: list[SuiteItem]) -> list[SuiteItem]:
    if not items:
        raise BadInputError(f"suite {str(path)!r} has no prompts")
    return items


def _sniff_csv(path: Path) -> Callable[[Path, str | None], list[SuiteItem]]:
    header = [cell.strip() for cell in _csv_rows(path)[0]]
    if "Behavior" in header:
        return load_harmbench
    if "prompt" in header and "label" in header:
        return load_xstest
    return load_advbench


FORMATS: dict[str, Callable[[Path, str | None], list[SuiteItem]]] = {
    "jsonl": load_jsonl,
    "harmbench": load_harmbench,
    "advbench": load_advbench,
    "xstest": load_xstest,
    "hex-phi": load_hex_phi_dir,
}


def load_suite_spec(spec: str) -> list[SuiteItem]:
    """One `--suite` value: a path (format sniffed), `FORMAT:PATH`, or `organism:LABDIR`."""
    prefix, sep, rest = spec.partition(":")
    if sep and (prefix in FORMATS or prefix == "organism") and rest:
        path = _existing(rest)
        if prefix == "organism":
            return load_organism(path)
        return FORMATS[prefix](path, None)
    path = _existing(spec)
    if path.is_dir():
        if (path / "suites").is_dir():
            return load_organism(path)
        if list(path.glob("*.jsonl")):
            return [item for file in sorted(path.glob("*.jsonl")) for item in load_jsonl(file)]
        return load_hex_phi_dir(path)
    if path.suffix == ".jsonl":
        return load_jsonl(path)
    if path.suffix == ".csv":
        return _sniff_csv(path)(path, None)
    known = ", ".join([*FORMATS, "organism"])
    raise BadInputError(f"cannot tell the format of suite {spec!r}; use a .jsonl/.csv file or FORMAT:PATH ({known})")


def _existing(spec: str) -> Path:
    path = Path(spec).expanduser()
    if not path.exists():
        raise BadInputError(f"suite {spec!r} not found (give a file, a folder, or FORMAT:PATH)")
    return path


def load_suites(specs: Sequence[str], *, limit: int | None = None, seed: int = 0) -> list[SuiteItem]:
    """Resolve suite specs (files, folders, `format:path`, `organism:LABDIR`) into sampled items."""
    if not specs:
        raise BadInputError("no suite given; pass --suite FILE_OR_DIR (see `realignkit audit --help`)")
    items: list[SuiteItem] = []
    for spec in specs:
        items.extend(load_suite_spec(spec))
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            raise BadInputError(f"duplicate item id {item.id!r} in suite {item.suite!r}; ids must be unique")
        seen.add(item.key)
    return stratified_sample(items, limit, seed)
