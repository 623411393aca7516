import warnings

import numpy as np
import pytest
from drift_helpers import quick_config

from realignkit.common import BadInputError
from realignkit.drift.bench import DETECTORS, healthy_units, make_baseline
from realignkit.drift.cvae import ConditionalVAE, CVAEConfig
from realignkit.drift.drift_model import DriftModel
from realignkit.drift.failure_metrics import precision_recall_f1


def _toy(seed, n=200):
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    amp = np.exp(0.2 * rng.standard_normal((n, 1)))
    t = np.linspace(0, 1, 8)
    x = (amp * (1.0 + c) * t + 0.01 * rng.standard_normal((n, 8))).astype(np.float32)  # level depends on c
    return x, c


def test_cvae_pyod_api_flags_units_abnormal_for_their_condition():
    x, c = _toy(0)
    detector = ConditionalVAE(CVAEConfig(epochs=60, min_updates=400, seed=3)).fit(x[:150], c[:150], x[150:], c[150:])
    assert np.isfinite(detector.threshold_)
    xt, ct = _toy(1, 60)
    # a low-stress unit degrading like a high-stress one: normal level overall, abnormal for its condition
    ct[:10] = -0.8
    xt[:10] = 1.8 * np.linspace(0, 1, 8)
    flags = detector.predict(xt, ct)
    assert flags.shape == (60,)
    assert flags[:10].mean() >= 0.9
    assert flags[10:].mean() <= 0.1


def test_cvae_is_reproducible_and_round_trips_through_safetensors(tmp_path):
    x, c = _toy(2, 120)
    a = ConditionalVAE(CVAEConfig(epochs=10, min_updates=0, seed=4)).fit(x, c)
    b = ConditionalVAE(CVAEConfig(epochs=10, min_updates=0, seed=4)).fit(x, c)
    assert np.array_equal(a.decision_function(x, c), b.decision_function(x, c))
    a.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector.json", "detector.safetensors"]
    loaded = ConditionalVAE.load(tmp_path)
    assert np.allclose(loaded.decision_function(x, c), a.decision_function(x, c))
    assert loaded.threshold_ == a.threshold_


def test_cvae_score_is_standardized_error_plus_prior_distance_of_the_posterior_mean():
    import torch

    x, c = _toy(2, 120)
    detector = ConditionalVAE(CVAEConfig(epochs=10, min_updates=0, seed=4)).fit(x, c)
    score = detector.decision_function(x, c)
    with torch.no_grad():
        x_t, c_t = detector._inputs(x, c)
        mu, _ = detector._encode(x_t, c_t)
        mean, logvar = detector._decode(mu, c_t)
        expected = (((mean - x_t) ** 2) * torch.exp(-logvar)).mean(dim=1) + 0.5 * (mu**2).sum(dim=1)
    assert np.allclose(score, expected.numpy(), rtol=1e-5, atol=1e-6)
    # the full KL adds ½Σ(σ² − 1 − log σ²) ≥ 0, the posterior-width part, on top of ½‖μ‖²
    detector.config = detector.config.model_copy(update={"latent_score": "kl"})
    full = detector.decision_function(x, c)
    assert np.all(full >= score - 1e-5) and not np.allclose(full, score)


def test_unknown_config_keys_are_rejected():
    with pytest.raises(ValueError):
        CVAEConfig(latent=3)


@pytest.mark.parametrize("name", [d for d in DETECTORS if d != "cvae"])
def test_baselines_share_the_api(name):
    x, c = _toy(5, 120)
    detector = make_baseline(name, quick_config()).fit(x[:90], c[:90], x[90:], c[90:])
    scores = detector.decision_function(x, c)
    assert scores.shape == (120,)
    assert set(np.unique(detector.predict(x, c))) <= {0, 1}


def test_drift_model_predicts_failures_early_and_warns_on_unseen_conditions(small_fleets, tmp_path):
    train, test = small_fleets
    model = DriftModel(quick_config()).fit(healthy_units(train))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = model.score(test, 0.5)  # test conditions are the training levels: no warning
    prf = precision_recall_f1(test.labels(), np.array([s.flag for s in scores]))
    assert prf.f1 >= 0.7, prf  # a tiny, quickly trained model; the bench measures the real figure
    model.save(tmp_path)
    again = DriftModel.load(tmp_path)
    assert [s.flag for s in again.score(test, 0.5)] == [s.flag for s in scores]
    test.units[0].conditions = test.units[0].conditions + np.array([40.0, 0.0])
    with pytest.warns(UserWarning, match="unseen in training"):
        model.score(test, 0.5)


def test_empty_healthy_fleet_is_refused(small_fleets):
    train, _ = small_fleets
    with pytest.raises(BadInputError, match="healthy set is empty"):
        DriftModel(quick_config()).fit(train.subset([]))
