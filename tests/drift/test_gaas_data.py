from pathlib import Path

import pytest

from realignkit.drift.gaas import GAAS_CUTOFF_H, gaas_data_path, load_gaas

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "laser" / "gaas_laser_degradation.csv"


def test_shipped_gaas_copy_has_the_known_failures():
    fleet = load_gaas()
    assert len(fleet) == 15 and all(len(u.times) == 16 for u in fleet.units)
    assert [u.unit for u in fleet.units if u.label == 1] == ["1", "6", "10"]
    prefix = fleet.truncated(GAAS_CUTOFF_H)
    assert all(u.end_time == GAAS_CUTOFF_H for u in prefix.units)
    assert (gaas_data_path().parent / "GAAS_CITATION.txt").read_text().count("Meeker") == 1


@pytest.mark.skipif(not SHARED.is_file(), reason="needs ../shared/datasets/laser")
def test_shipped_copy_equals_the_reference_dataset():
    assert gaas_data_path().read_bytes() == SHARED.read_bytes()
