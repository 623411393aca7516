"""Fixtures of the drift tests."""

import pytest


@pytest.fixture(scope="module")
def small_fleets():
    from realignkit.drift.generator import generate_laser_fleet

    return generate_laser_fleet("vcsel", 150, seed=11), generate_laser_fleet("vcsel", 80, seed=12, mix="hot")
