import numpy as np
import pytest

from realignkit.common import BadInputError
from realignkit.drift.failure_metrics import lead_times, precision_recall_f1
from realignkit.drift.features import FeatureSpec
from realignkit.drift.generator import (
    PRESETS,
    acceleration_factor,
    generate_laser_fleet,
    scale_matched_preset,
)
from realignkit.drift.table import Fleet, UnitSeries


def _unit(times, values, name="u"):
    return UnitSeries(name, np.asarray(times, float), np.asarray(values, float).reshape(-1, 1), np.zeros(0))


def test_window_resamples_linearly_and_ignores_readings_after_the_horizon():
    spec = FeatureSpec(n_points=5, duration=100.0, value_scale=[2.0])
    unit = _unit([0, 30, 50, 60, 100], [0, 3, 5, 600, 10])  # the spike at 60 is after horizon 0.5
    window = spec.window(unit, 0.5)
    assert np.allclose(window[:, 0], np.linspace(0, 5, 5) / 2.0)


def test_window_refuses_a_prefix_that_stops_short_of_the_horizon():
    spec = FeatureSpec(n_points=4, duration=100.0, value_scale=[1.0])
    with pytest.raises(BadInputError, match="short of horizon"):
        spec.window(_unit([0, 10, 20], [0, 1, 2]), 0.8)


def test_per_unit_duration_uses_each_units_own_end():
    spec = FeatureSpec(n_points=3, duration=1.0, per_unit_duration=True, value_scale=[1.0])
    short, long = _unit([0, 10], [0, 10]), _unit([0, 20, 40], [0, 20, 40])
    assert np.allclose(spec.window(short, 1.0)[:, 0], [0, 5, 10])
    assert np.allclose(spec.window(long, 0.5)[:, 0], [0, 10, 20])


def test_arrhenius_and_current_acceleration():
    preset = PRESETS["vcsel"]
    t_ref, j_ref = preset.reference_point
    assert acceleration_factor(preset, np.array([t_ref]), np.array([j_ref]))[0] == pytest.approx(1.0)
    hot = acceleration_factor(preset, np.array([t_ref + 15.0]), np.array([j_ref * 1.2]))[0]
    expected = np.exp(preset.activation_energy_ev / 8.617333e-5 * (1 / (t_ref + 273.15) - 1 / (t_ref + 288.15)))
    assert hot == pytest.approx(expected * 1.2 ** preset.current_exponent, rel=1e-6)


def test_generator_is_seeded_and_labels_follow_the_reference_criterion():
    a = generate_laser_fleet("vcsel", 200, seed=5)
    b = generate_laser_fleet("vcsel", 200, seed=5)
    assert all(np.array_equal(x.values, y.values) for x, y in zip(a.units, b.units, strict=True))
    labels = a.labels()
    assert 0.05 < labels.mean() < 0.4
    preset = PRESETS["vcsel"]
    conds = np.stack([u.conditions for u in a.units])
    derated_end = np.array([u.values[-1, 0] for u in a.units]) / acceleration_factor(preset, conds[:, 0], conds[:, 1])
    # noise (0.3 %) can flip only units right at the 12 % criterion
    clear = np.abs(derated_end - preset.failure_increase_pct) > 2.0
    assert np.array_equal(labels[clear], (derated_end[clear] >= preset.failure_increase_pct).astype(int))
    mechanisms = set(a.meta["mechanism"].values())
    assert {"main", "weak"} <= mechanisms


def test_scale_matching_recovers_the_generating_median():
    preset = PRESETS["gaas"].model_copy(update={"median_increase_pct": 6.0, "unit_spread": 0.15})
    fleet = generate_laser_fleet(preset, 300, seed=1)
    matched = scale_matched_preset(PRESETS["gaas"], fleet, at_time=2500.0)
    assert matched.median_increase_pct == pytest.approx(6.0, rel=0.1)
    assert matched.unit_spread == pytest.approx(0.15, rel=0.35)


def test_precision_recall_f1_and_lead_time():
    prf = precision_recall_f1(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
    assert (prf.precision, prf.recall, prf.f1) == (0.5, 0.5, 0.5)
    labels = np.array([1, 1, 0])
    flags = {0.25: np.array([1, 0, 0]), 0.5: np.array([0, 1, 1]), 1.0: np.array([1, 1, 0])}
    leads = lead_times(labels, flags, duration=100.0)
    # unit 0 is flagged at 0.25 but drops out at 0.5: it counts from 1.0; unit 1 stays flagged from 0.5
    assert leads.tolist() == [0.0, 50.0]


def test_empty_healthy_set_is_refused():
    with pytest.raises(BadInputError, match="healthy set is empty"):
        FeatureSpec.fit(Fleet([], ["v"], []))


def test_noise_estimate_recovers_the_generators_measurement_noise():
    from realignkit.drift.features import estimate_noise

    for preset in ("vcsel", "edge"):
        fleet = generate_laser_fleet(preset, 150, seed=3)
        healthy = fleet.subset([u.unit for u in fleet.units if u.label == 0])
        sigma = float(estimate_noise(healthy)[0])
        assert sigma == pytest.approx(PRESETS[preset].noise_pct, rel=0.15), preset


def test_asinh_features_are_asinh_of_value_over_noise_then_scaled():
    rng = np.random.default_rng(0)
    times = np.arange(0, 101, 10.0)
    units = [_unit(times, 0.5 * rng.standard_normal(times.size) + 0.05 * times * (1 + i % 3), f"u{i}")
             for i in range(12)]
    fleet = Fleet(units, ["v"], [])
    spec = FeatureSpec.fit(fleet, n_points=11, value_transform="asinh")
    sigma, scale = spec.noise_scale[0], spec.value_scale[0]
    assert 0.3 < sigma < 0.8  # the drawn noise is 0.5
    window = spec.window(units[0], 1.0)[:, 0]
    assert np.allclose(window, np.arcsinh(units[0].values[:, 0] / sigma) / scale)
    # same spec, no transform: plain values over their own scale
    plain = FeatureSpec.fit(fleet, n_points=11)
    assert plain.noise_scale == [] and np.allclose(plain.window(units[0], 1.0)[:, 0],
                                                   units[0].values[:, 0] / plain.value_scale[0])
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(BadInputError, match="unknown value transform"):
        FeatureSpec.from_dict({**spec.to_dict(), "value_transform": "log"})


def test_asinh_transform_refuses_units_too_short_to_estimate_noise():
    fleet = Fleet([_unit([0, 10], [0, 1], "a"), _unit([0, 10], [0, 2], "b")], ["v"], [])
    with pytest.raises(BadInputError, match="at least 3 readings"):
        FeatureSpec.fit(fleet, value_transform="asinh")
