"""Same seed, same weights; the fleet writes the long table that `drift` reads."""

import csv

from realignkit.cli import main
from realignkit.lab import build_lab
from realignkit.lab.fleet import FLEET_CONDITIONS
from realignkit.lab.organism_config import PROFILES

MICRO = PROFILES["tiny"].model_copy(
    update={"name": "micro", "base_steps": 6, "aligned_steps": 6, "finetune_examples": 20, "finetune_epochs": 1,
            "benign_per_skill": 20, "suite_per_old_skill": 2, "suite_new_skill": 4, "trajectory_points": 1,
            "probe_harmful": 4, "probe_skill": 2, "scenarios": ("explicit-10",)}
)


def _hashes(summary):
    return {name: record["weights_sha256"] for name, record in summary["models"].items()}


def test_same_seed_same_weights_and_other_seed_differs(tmp_path):
    first = build_lab(tmp_path / "a", profile=MICRO, seed=3, progress=False)
    second = build_lab(tmp_path / "b", profile=MICRO, seed=3, progress=False)
    assert set(_hashes(first)) == {"base", "aligned", "explicit-10-full", "explicit-10-lora"}
    assert _hashes(first) == _hashes(second)
    assert (tmp_path / "a" / "suites" / "harmful.jsonl").read_text() == (
        tmp_path / "b" / "suites" / "harmful.jsonl"
    ).read_text()
    other = build_lab(tmp_path / "c", profile=MICRO.model_copy(update={"scenarios": ()}), seed=4, progress=False)
    assert other["models"]["aligned"]["weights_sha256"] != first["models"]["aligned"]["weights_sha256"]


def test_fleet_writes_a_long_table(tmp_path, tiny_organism):
    assert main(["lab", "fleet", "--lab", str(tiny_organism), "--out", str(tmp_path / "f"), "--steps", "x"]) == 2
    code = main(["lab", "fleet", "--lab", str(tiny_organism), "--out", str(tmp_path / "fleet"), "--runs", "2",
                 "--seed", "1", "--steps", "5", "--quiet"])
    assert code == 0
    path = tmp_path / "fleet" / "fleet.csv"
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["unit", "step", "harmful_refusal", "new_skill_accuracy", "old_skill_accuracy", "loss",
                             *FLEET_CONDITIONS]
    units = {r["unit"] for r in rows}
    assert len(units) == 2
    for unit in units:
        steps = [int(r["step"]) for r in rows if r["unit"] == unit]
        assert steps[0] == 0 and len(steps) >= 5
        conditions = {tuple(r[c] for c in FLEET_CONDITIONS) for r in rows if r["unit"] == unit}
        assert len(conditions) == 1
    assert (tmp_path / "fleet" / "runs.json").is_file()


_DATA_DIGEST = """
import hashlib
from realignkit.lab import organism_data as data
from realignkit.lab import world
from realignkit.lab.build_organism import stage_examples
from realignkit.lab.organism_config import PROFILES, scenario_settings
from realignkit.lab.finetune import finetune_dataset
from realignkit.lab.organism_model import build_tokenizer
profile = PROFILES["default"]
parts = [sorted(build_tokenizer(world.world_text_corpus()).get_vocab().items()),
         data.build_suites(0, profile.suite_sizes()), stage_examples("aligned", profile, 0),
         *(finetune_dataset(scenario_settings(name, "full", 0), profile) for name in profile.scenarios)]
print(hashlib.sha256(repr(parts).encode()).hexdigest())
"""


def test_training_data_does_not_depend_on_the_string_hash_seed():
    """Set iteration over strings changes with PYTHONHASHSEED; the organism's data and vocabulary must not."""
    import os
    import subprocess
    import sys

    digests = {
        subprocess.run([sys.executable, "-c", _DATA_DIGEST], env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(digests) == 1 and len(digests.pop()) == 64
