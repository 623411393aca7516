"""Extra fine-tuning runs of an existing lab: `run_finetune` (one run) and `build_fleet` (many, as fleet.csv).

The fleet is the organism's second degradation data set for `drift` (`realignkit drift`): unit = run, value = refusal
rate per checkpoint, conditions = lr, steps, harmful ratio, kind.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from tqdm.auto import tqdm

from realignkit.checkpoints import model_loading
from realignkit.common import BadInputError, atomic_output_dir, check_output_not_inside_inputs, write_manifest
from realignkit.common.config import validation_problems
from realignkit.common.jsonl import read_jsonl_objects
from realignkit.evaluation.suite_items import SuiteItem
from realignkit.lab.finetune import TRAJECTORY_COLUMNS, Keep, RunDirs, run_scenario
from realignkit.lab.organism_config import FinetuneSettings, LabProfile
from realignkit.lab.organism_data import SUITE_NAMES
from realignkit.lab.training import single_thread

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

FLEET_CONDITIONS = ("lr", "steps", "harmful_ratio", "kind")
HARMFUL_RATIOS = (0.0, 0.0, 0.02, 0.05, 0.1, 0.2, 0.3)  # 0.0 twice: healthy runs are the detector's training set
STEP_CHOICES = (40, 60, 80, 100)


def load_lab(lab_dir: str | Path) -> tuple[dict[str, Any], LabProfile, dict[str, list[SuiteItem]]]:
    """lab.json, its profile and the test-split suites; refuses anything that is not a lab dir."""
    root = Path(lab_dir)
    summary_path = root / "lab.json"
    if not summary_path.is_file() or not (root / "aligned" / "config.json").is_file():
        raise BadInputError(f"{str(lab_dir)!r} is not a lab directory (no lab.json or aligned/); run 'lab build' first")
    summary = json.loads(summary_path.read_text())
    profile = LabProfile(**summary["profile_settings"])
    suites = {name: _read_suite(root / "suites" / "test" / f"{name}.jsonl") for name in SUITE_NAMES}
    return summary, profile, suites


def _read_suite(path: Path) -> list[SuiteItem]:
    if not path.is_file():
        raise BadInputError(f"lab suite file {str(path)!r} is missing; rebuild the lab")
    return [SuiteItem(row["id"], row["prompt"], row["kind"], row["category"], row.get("answer"), path.stem)
            for _, row in read_jsonl_objects(path, "lab suite")]


def _load_aligned(lab_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    path = lab_dir / "aligned"
    return model_loading.load_causal_lm(path), model_loading.load_tokenizer(path)


def _settings(settings: FinetuneSettings | dict[str, Any]) -> FinetuneSettings:
    if isinstance(settings, FinetuneSettings):
        return settings
    try:
        return FinetuneSettings(**settings)
    except ValidationError as exc:
        problem = validation_problems(exc)[0]
        raise BadInputError(f"bad fine-tune setting {problem.where}: {problem.message}") from None


def run_finetune(
    lab_dir: str | Path,
    settings: FinetuneSettings | dict[str, Any],
    out_dir: str | Path,
    *,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune the lab's `aligned` once with custom settings; write the model dir + trajectory.csv + run.json."""
    chosen = _settings(settings)
    lab = Path(lab_dir).resolve()
    _, profile, suites = load_lab(lab)
    check_output_not_inside_inputs(out_dir, [lab])
    aligned, tokenizer = _load_aligned(lab)
    started = time.time()
    with atomic_output_dir(out_dir, force=force) as tmp, single_thread():
        record = run_scenario(aligned, tokenizer, chosen, profile, suites, RunDirs(tmp, lab / "aligned"),
                              progress=progress)
        record.pop("trajectory")
        (tmp / "run.json").write_text(json.dumps(record, indent=2) + "\n")
        write_manifest(tmp, command="lab finetune", parameters=chosen.model_dump(), inputs={"lab": lab},
                       started=started)
    return record


def sample_conditions(
    runs: int, seed: int, profile: LabProfile, step_choices: tuple[int, ...] = STEP_CHOICES
) -> list[FinetuneSettings]:
    """Random fleet conditions: kind, lr (log-uniform around the profile's lr), steps, harmful ratio."""
    rng = random.Random(f"fleet:{seed}")
    conditions = []
    for index in range(runs):
        kind = rng.choice(("full", "lora"))
        base_lr = profile.full_lr if kind == "full" else profile.lora_lr
        lr = base_lr * math.exp(rng.uniform(math.log(0.3), math.log(3.0)))
        conditions.append(
            FinetuneSettings(
                kind=kind, dataset="mix", harmful_ratio=rng.choice(HARMFUL_RATIOS), lr=float(f"{lr:.3g}"),
                steps=rng.choice(step_choices), trajectory_points=10, seed=seed * 1000 + index,
                scenario=f"fleet-{index:03d}",
            )
        )
    return conditions


def build_fleet(
    lab_dir: str | Path,
    runs: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    keep_models: bool = False,
    force: bool = False,
    progress: bool = True,
    step_choices: tuple[int, ...] = STEP_CHOICES,
) -> Path:
    """`runs` fine-tunes with sampled conditions; writes fleet.csv (long table), runs.json and runs/<unit>/."""
    if runs < 1:
        raise BadInputError(f"--runs must be at least 1, got {runs}")
    lab = Path(lab_dir).resolve()
    _, profile, suites = load_lab(lab)
    check_output_not_inside_inputs(out_dir, [lab])
    conditions = sample_conditions(runs, seed, profile, step_choices)
    aligned, tokenizer = _load_aligned(lab)
    started = time.time()
    with atomic_output_dir(out_dir, force=force) as tmp, single_thread():
        records = []
        for settings in tqdm(conditions, desc="fleet", disable=not progress):
            record = run_scenario(
                aligned, tokenizer, settings, profile, suites, RunDirs(tmp / "runs" / settings.scenario, lab / "aligned"),
                progress=False, keep=Keep(weights=keep_models, metrics=False),
            )
            records.append(record)
        _write_fleet_csv(records, tmp / "fleet.csv")
        slim = [{k: v for k, v in r.items() if k != "trajectory"} for r in records]
        (tmp / "runs.json").write_text(json.dumps(slim, indent=2) + "\n")
        write_manifest(tmp, command="lab fleet", parameters={"runs": runs, "seed": seed, "keep_models": keep_models},
                       inputs={"lab": lab}, started=started)
    return Path(out_dir) / "fleet.csv"


def _write_fleet_csv(records: list[dict[str, Any]], path: Path) -> None:
    columns = ["unit", *TRAJECTORY_COLUMNS, *FLEET_CONDITIONS]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for record in records:
            for point in record["trajectory"]:
                row = {"unit": record["scenario"], **{c: point[c] for c in TRAJECTORY_COLUMNS}}
                row.update({c: record[c] for c in FLEET_CONDITIONS})
                writer.writerow(row)
