"""mergekit's method family (linear, gta: task arithmetic / TIES / DARE / breadcrumbs) against its formulas, and
the recipe semantics (gradients over layers, filters, scopes) against mergekit's rules, on small tensors."""

import pytest
import torch

from realignkit.common import BadInputError
from realignkit.methods._vectors import tensor_generator
from realignkit.methods.mergekit_recipe import REQUIRED, evaluate_setting, resolve, validator
from realignkit.methods.registry import get_method


def _random(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def tensors():
    aligned = _random(8, 6, seed=0)
    return aligned, [aligned + 0.3 * _random(8, 6, seed=s) for s in (1, 2, 3)]


def _call(method, params, aligned, tuned, name="model.layers.0.mlp.up_proj.weight"):
    spec = get_method(method)
    return spec.fn(aligned, tuned, spec.parse_params(params), name=name)


def test_linear_is_a_weighted_average(tensors):
    _, tuned = tensors
    out = _call("linear", {"weights": [0.7, 0.3, 1.0]}, tuned[0], tuned)
    torch.testing.assert_close(out, (0.7 * tuned[0] + 0.3 * tuned[1] + tuned[2]) / 2.0)
    raw = _call("linear", {"weights": [0.7, 0.3, 1.0], "normalize": False}, tuned[0], tuned)
    torch.testing.assert_close(raw, 0.7 * tuned[0] + 0.3 * tuned[1] + tuned[2])


def test_task_arithmetic_with_and_without_normalize(tensors):
    aligned, tuned = tensors
    taus = [t - aligned for t in tuned[:2]]
    plain = _call("gta", {"weights": [0.6, 0.3], "scale": 0.8}, aligned, tuned[:2])
    torch.testing.assert_close(plain, aligned + 0.8 * (0.6 * taus[0] + 0.3 * taus[1]))
    normalized = _call("gta", {"weights": [0.6, 0.3], "scale": 0.8, "normalize": True}, aligned, tuned[:2])
    torch.testing.assert_close(normalized, aligned + 0.8 * (0.6 * taus[0] + 0.3 * taus[1]) / 0.9)
    # summed weights ~0: mergekit divides by 1 instead
    cancelled = _call("gta", {"weights": [0.5, -0.5], "normalize": True}, aligned, tuned[:2])
    torch.testing.assert_close(cancelled, aligned + 0.5 * taus[0] - 0.5 * taus[1])


def _ties_reference(aligned, tuned, densities, weights, normalize, scale):
    """Entry by entry, from the TIES paper with mergekit's conventions (sign election >= 0 -> +)."""
    flat = [(t - aligned).reshape(-1) for t in tuned]
    trimmed = []
    for tau, density in zip(flat, densities, strict=True):
        k = max(1, int(density * tau.numel()))
        keep = set(torch.argsort(tau.abs(), descending=True)[:k].tolist())
        trimmed.append([float(tau[i]) if i in keep else 0.0 for i in range(tau.numel())])
    merged = []
    for i in range(flat[0].numel()):
        deltas = [w * tr[i] for w, tr in zip(weights, trimmed, strict=True)]
        sign = 1.0 if sum(deltas) >= 0 else -1.0
        agree = [d != 0 and (d > 0) == (sign > 0) for d in deltas]
        num = sum(d for d, a in zip(deltas, agree, strict=True) if a)
        den = sum(w for w, a in zip(weights, agree, strict=True) if a) or 1.0
        merged.append(num / den if normalize else num)
    return aligned + scale * torch.tensor(merged).reshape(aligned.shape)


@pytest.mark.parametrize("normalize", [True, False])
def test_ties_per_model_density_against_the_paper(tensors, normalize):
    aligned, tuned = tensors
    params = {"sparsify": "magnitude", "consensus": "sum", "density": [0.4, 0.25, 0.6], "weights": [1.0, 0.5, 0.8],
              "normalize": normalize, "scale": 0.9}
    expected = _ties_reference(aligned, tuned, [0.4, 0.25, 0.6], [1.0, 0.5, 0.8], normalize, 0.9)
    torch.testing.assert_close(_call("gta", params, aligned, tuned), expected)


def test_ties_elects_plus_on_an_exact_tie():
    aligned = torch.zeros(2)
    tuned = [torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 3.0])]
    out = _call("gta", {"sparsify": "magnitude", "consensus": "sum", "normalize": True}, aligned, tuned)
    assert out.tolist() == [1.0, 2.5]  # entry 0: +1 and -1 sum to 0, mergekit keeps the positive side


def test_gta_ties_equals_realignkit_ties(tensors):
    aligned, tuned = tensors
    ours = _call("ties", {"density": 0.3, "weights": [0.6, 0.4, 1.0], "scale": 0.7}, aligned, tuned)
    family = _call("gta", {"sparsify": "magnitude", "consensus": "sum", "density": 0.3, "weights": [0.6, 0.4, 1.0],
                           "scale": 0.7, "normalize": True}, aligned, tuned)
    torch.testing.assert_close(family, ours)


def test_breadcrumbs_drops_outliers_and_the_smallest():
    aligned = torch.zeros(10)
    tau = torch.tensor([5.0, -0.1, 0.2, -9.0, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8])
    out = _call("breadcrumbs", {"density": 0.5, "gamma": 0.1}, aligned, [tau])
    # n=10: drop the 1 largest |τ| (9.0), keep the next 5 (5.0, 0.8, 0.7, 0.6, 0.5), drop the 4 smallest
    expected = torch.tensor([5.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.5, 0.6, 0.7, -0.8])
    torch.testing.assert_close(out, expected)
    rescaled = _call("breadcrumbs", {"density": 0.5, "gamma": 0.1, "rescale": True}, aligned, [tau])
    torch.testing.assert_close(rescaled, expected * (tau.abs().sum() / expected.abs().sum()))


def test_dare_linear_drops_with_the_density_and_l1_rescales():
    aligned = torch.zeros(200_000)
    tau = _random(200_000, seed=5)
    out = _call("dare_linear", {"density": 0.3}, aligned, [tau], name="t")
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.3) < 0.005  # ~ 4.6 standard errors
    scale = tau.abs().sum() / tau[kept].abs().sum()
    torch.testing.assert_close(out[kept], tau[kept] * scale)  # L1 rescale (mergekit), not 1/density
    torch.testing.assert_close(out.abs().sum(), tau.abs().sum())
    same = _call("dare_linear", {"density": 0.3}, aligned, [tau], name="t")
    assert torch.equal(out, same)  # seeded per tensor name: reproducible


def test_dare_ties_is_a_seeded_drop_then_sign_election(tensors):
    aligned, tuned = tensors
    name, weights = "model.layers.0.mlp.up_proj.weight", [1.0, 0.5, 2.0]
    out = _call("dare_ties", {"density": 0.5, "weights": weights}, aligned, tuned, name=name)
    deltas = []
    for index, (theta, weight) in enumerate(zip(tuned, weights, strict=True)):
        tau = theta - aligned
        kept = tau * (torch.rand(tau.shape, generator=tensor_generator(0, name, index)) < 0.5)
        deltas.append(weight * kept * (tau.abs().sum() / kept.abs().sum()))  # L1 rescale (default on)
    elected = torch.where(sum(deltas) >= 0, 1.0, -1.0)
    merged = sum(d * (torch.sign(d) == elected) for d in deltas)  # normalize is off by default for dare_ties
    torch.testing.assert_close(out, aligned + merged)
    assert not torch.allclose(out, _call("dare_ties", {"density": 0.5, "weights": weights, "seed": 1}, aligned, tuned,
                                         name=name))


@pytest.mark.parametrize(("setting", "position", "expected"), [
    (0.5, 0.3, 0.5),
    ([0.0, 1.0], 0.25, 0.25),
    ([0.0, 0.5, 1.0, 0.2], 0.5, 0.75),  # scaled 1.5 -> halfway between 0.5 and 1.0
    ([0.0, 0.5, 1.0, 0.2], 1.0, 0.2),
    ([0.1, 0.9], 0.0, 0.1),
])
def test_gradients_interpolate_like_mergekit(setting, position, expected):
    assert evaluate_setting(setting, "model.layers.3.mlp.up_proj.weight", position, validator("t")) == pytest.approx(expected)


def test_filters_take_the_first_match_and_fall_back_to_the_next_scope():
    weight = [{"filter": "self_attn", "value": 0.2}, {"filter": "mlp", "value": [0.0, 1.0]}]
    assert resolve("weight", [{"weight": weight}, {"weight": 0.9}], "model.layers.1.self_attn.q_proj.weight", 0.5,
                   REQUIRED, "m") == 0.2
    assert resolve("weight", [{"weight": weight}, {"weight": 0.9}], "model.layers.1.mlp.up_proj.weight", 0.5,
                   REQUIRED, "m") == 0.5
    # no filter matches: the top-level value applies
    assert resolve("weight", [{"weight": weight}, {"weight": 0.9}], "model.norm.weight", 0.0, REQUIRED, "m") == 0.9
    assert resolve("density", [{}, {}], "model.norm.weight", 0.0, 1.0, "m") == 1.0  # default
    with pytest.raises(BadInputError, match="no 'weight' for model"):
        resolve("weight", [{"weight": weight}, {}], "model.norm.weight", 0.0, REQUIRED, "model 'x'")


def test_boolean_lists_pick_a_value_and_bad_types_are_one_line():
    assert evaluate_setting([True, False], "x", 0.4, validator("normalize")) is True
    assert evaluate_setting([True, False], "x", 1.0, validator("normalize")) is False
    assert evaluate_setting("1e-1", "x", 0.0, validator("density")) == pytest.approx(0.1)  # YAML leaves 1e-1 a string
    with pytest.raises(BadInputError, match="'density': 'lots' is not a number"):
        evaluate_setting("lots", "x", 0.0, validator("density"))
