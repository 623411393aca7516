"""Every weight-only method against its published formula on small random tensors."""

import math

import pytest
import torch

from realignkit.common import BadInputError
from realignkit.methods.registry import get_method


def _random(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def tensors():
    aligned = _random(6, 5, seed=0)
    tuned = [aligned + 0.3 * _random(6, 5, seed=1), aligned + 0.3 * _random(6, 5, seed=2)]
    unaligned = aligned - 0.2 * _random(6, 5, seed=3)
    return aligned, tuned, unaligned


def _call(method, params, aligned, tuned, unaligned=None, name="model.layers.0.mlp.up_proj.weight", state=None):
    spec = get_method(method)
    parsed = spec.parse_params(params)
    return spec.fn(aligned, tuned, parsed, unaligned=unaligned, name=name, state=state)


def test_interpolate(tensors):
    aligned, tuned, _ = tensors
    out = _call("interpolate", {"alpha": 0.3}, aligned, tuned[:1])
    torch.testing.assert_close(out, 0.7 * aligned + 0.3 * tuned[0])
    torch.testing.assert_close(_call("interpolate", {"alpha": 0.0}, aligned, tuned[:1]), aligned)


def test_slerp_matches_spherical_formula_and_endpoints(tensors):
    aligned, tuned, _ = tensors
    t = 0.25
    a, b = aligned.reshape(-1), tuned[0].reshape(-1)
    omega = math.acos(float(torch.dot(a, b) / (a.norm() * b.norm())))
    expected = (math.sin((1 - t) * omega) * aligned + math.sin(t * omega) * tuned[0]) / math.sin(omega)
    torch.testing.assert_close(_call("slerp", {"t": t}, aligned, tuned[:1]), expected)
    torch.testing.assert_close(_call("slerp", {"t": 1.0}, aligned, tuned[:1]), tuned[0])
    assert not torch.allclose(expected, torch.lerp(aligned, tuned[0], t))  # really spherical


def test_slerp_falls_back_to_lerp_when_parallel(tensors):
    aligned, _, _ = tensors
    parallel = aligned * 2.0
    torch.testing.assert_close(_call("slerp", {"t": 0.5}, aligned, [parallel]), 1.5 * aligned)


def test_task_arithmetic_weighted_sum(tensors):
    aligned, tuned, _ = tensors
    out = _call("task_arithmetic", {"scale": 0.7, "weights": [0.25, 1.5]}, aligned, tuned)
    expected = aligned + 0.7 * (0.25 * (tuned[0] - aligned) + 1.5 * (tuned[1] - aligned))
    torch.testing.assert_close(out, expected)


def _ties_reference(aligned, tuned, density, weights, scale):
    """Loop-per-entry TIES, written independently of the vectorised implementation."""
    taus = [(t - aligned).reshape(-1) for t in tuned]
    k = max(1, int(density * taus[0].numel()))
    trimmed = []
    for tau in taus:
        keep = set(torch.argsort(tau.abs(), descending=True)[:k].tolist())
        trimmed.append([float(tau[i]) if i in keep else 0.0 for i in range(tau.numel())])
    merged = []
    for i in range(taus[0].numel()):
        total = sum(w * tr[i] for w, tr in zip(weights, trimmed, strict=True))
        sign = (total > 0) - (total < 0)
        num = sum(w * tr[i] for w, tr in zip(weights, trimmed, strict=True) if tr[i] != 0 and (tr[i] > 0) - (tr[i] < 0) == sign)
        den = sum(w for w, tr in zip(weights, trimmed, strict=True) if tr[i] != 0 and (tr[i] > 0) - (tr[i] < 0) == sign)
        merged.append(num / den if den else 0.0)
    return aligned + scale * torch.tensor(merged).reshape(aligned.shape)


@pytest.mark.parametrize("weights", [[1.0, 1.0], [0.3, 0.9]])
def test_ties_trim_elect_disjoint_mean(tensors, weights):
    aligned, tuned, _ = tensors
    out = _call("ties", {"density": 0.4, "scale": 0.8, "weights": weights}, aligned, tuned)
    torch.testing.assert_close(out, _ties_reference(aligned, tuned, 0.4, weights, 0.8))
    # trimming really happened: many entries keep the aligned value
    assert (out == aligned).float().mean() > 0.2


def test_ties_density_one_single_model_is_task_arithmetic(tensors):
    aligned, tuned, _ = tensors
    out = _call("ties", {"density": 1.0}, aligned, tuned[:1])
    torch.testing.assert_close(out, tuned[0])


def test_dare_keeps_with_probability_and_rescales():
    aligned = torch.zeros(200, 100)
    tuned = [torch.ones(200, 100)]
    out = _call("dare", {"density": 0.3, "seed": 7}, aligned, tuned)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.3) < 0.02
    torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), 1 / 0.3))
    again = _call("dare", {"density": 0.3, "seed": 7}, aligned, tuned)
    other = _call("dare", {"density": 0.3, "seed": 8}, aligned, tuned)
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_dare_weighted_multi_model_expectation(tensors):
    aligned, tuned, _ = tensors
    out = _call("dare", {"density": 1.0, "scale": 0.5, "weights": [1.0, 2.0]}, aligned, tuned)
    torch.testing.assert_close(out, aligned + 0.5 * ((tuned[0] - aligned) + 2 * (tuned[1] - aligned)))


def test_resta_adds_safety_vector(tensors):
    aligned, tuned, unaligned = tensors
    out = _call("resta", {"beta": 0.6}, aligned, tuned[:1], unaligned)
    torch.testing.assert_close(out, tuned[0] + 0.6 * (aligned - unaligned))


def test_resta_with_dare_on_task_vector():
    aligned, unaligned = torch.zeros(100, 100), -torch.ones(100, 100)
    tuned = [torch.full((100, 100), 2.0)]
    out = _call("resta", {"beta": 1.0, "dare_density": 0.5}, aligned, tuned, unaligned)
    values = set(torch.unique(out).tolist())
    assert values == {1.0, 5.0}  # δ = 1 everywhere; τ = 2 dropped (0) or rescaled (4)


def test_safe_lora_projection_formula():
    from realignkit.methods.safe_lora import projection_similarity, safety_projection

    safety, update = _random(4, 7, seed=1), _random(4, 7, seed=2)
    c = safety @ safety.T / torch.linalg.norm(safety)
    torch.testing.assert_close(safety_projection(safety, update), c @ update)
    wide, tall = _random(7, 4, seed=3), _random(7, 4, seed=4)  # other multiplication order
    torch.testing.assert_close(safety_projection(wide, tall), (wide @ wide.T / wide.norm()) @ tall)
    expected = torch.nn.functional.cosine_similarity((c @ update).reshape(1, -1), update.reshape(1, -1)).item()
    assert projection_similarity(safety, update) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("fraction,total,count", [(0.7, 10, 7), (0.3, 4, 2), (0.25, 4, 1), (1.0, 210, 210),
                                                   (0.75, 210, 158), (0.01, 3, 1)])
def test_safe_lora_fraction_counts_modules_by_ceiling(fraction, total, count):
    from realignkit.methods.safe_lora import share_count

    assert share_count(fraction, total) == count


def test_safe_lora_tensor_fn_projects_only_chosen(tensors):
    aligned, tuned, unaligned = tensors
    name = "model.layers.0.self_attn.q_proj.weight"
    state = {"projected": frozenset({name})}
    out = _call("safe_lora", {}, aligned, tuned[:1], unaligned, name=name, state=state)
    v = aligned - unaligned
    torch.testing.assert_close(out, aligned + (v @ v.T / v.norm()) @ (tuned[0] - aligned))
    untouched = _call("safe_lora", {}, aligned, tuned[:1], unaligned, name="other.weight", state=state)
    torch.testing.assert_close(untouched, tuned[0])


@pytest.mark.parametrize(
    "method,params,fragment",
    [
        ("interpolate", {"alpha": 1.5}, "alpha"),
        ("ties", {"density": 0.0}, "density"),
        ("dare", {"density": 2}, "density"),
        ("safe_lora", {"threshold": 0.3, "num_layers": 2}, "not both"),
        ("safe_lora", {"num_layers": 2, "fraction": 0.5}, "not both"),
        ("safe_lora", {"fraction": 0.0}, "fraction"),
        ("ties", {"densty": 0.3}, "did you mean 'density'"),
    ],
)
def test_bad_parameters(method, params, fragment):
    with pytest.raises(BadInputError, match=fragment):
        get_method(method).parse_params(params)


def test_unknown_method_suggests_closest():
    with pytest.raises(BadInputError, match="did you mean 'ties'"):
        get_method("tise")


@pytest.mark.parametrize("k", [1, 7, 500, 999, 1000])
def test_kth_largest_radix_select_is_exact(k):
    from realignkit.methods._topk import kth_largest

    values = torch.cat([_random(900, seed=5).abs(), torch.zeros(60), torch.full((40,), 0.5)])  # zeros and ties
    assert kth_largest(values, k) == values.kthvalue(values.numel() - k + 1).values.item()
    tiny = torch.tensor([3e-41, 1e-45, 2.0, float("inf")])  # subnormals and inf keep their order
    assert kth_largest(tiny, 3) == pytest.approx(3e-41, rel=1e-3)
    assert kth_largest(tiny, 1) == float("inf")


def test_top_k_blocks_keeps_exactly_k_with_ties_broken_by_position():
    from realignkit.methods._topk import keep_mask, top_k_blocks

    magnitude = torch.tensor([3.0, 1.0, 2.0, 2.0, 0.0, 2.0, 2.0, 5.0, 2.0, 1.0])  # the 2.0s tie at the boundary
    blocks = [magnitude[0:4], magnitude[4:7], magnitude[7:10]]
    (top,) = top_k_blocks(lambda: ([b] for b in blocks), 5)  # 5.0, 3.0 and the first three 2.0s
    assert top.threshold == 2.0 and top.equal_per_block == (2, 2, 1) and top.keep_equal_per_block == (2, 1, 0)
    mask = torch.cat([keep_mask(b.clone(), top, i) for i, b in enumerate(blocks)])
    assert mask.tolist() == [1, 0, 1, 1, 0, 1, 0, 1, 0, 0]


def test_ties_keeps_exactly_k_on_quantised_task_vectors():
    aligned = torch.zeros(40, 50)
    tuned = [torch.randint(-3, 4, (40, 50), generator=torch.Generator().manual_seed(1)).float()]  # heavy ties
    out = _call("ties", {"density": 0.3}, aligned, tuned)
    assert int((out != 0).sum()) == 600  # exactly k = 0.3 · 2000, although |τ| takes only 4 values


def test_ties_blocks_match_reference_on_tensor_bigger_than_a_block(monkeypatch):
    from realignkit.methods import ties as ties_module

    monkeypatch.setattr(ties_module, "BLOCK", 70_000)  # 300k entries: five blocks, the last one partial
    aligned = _random(300, 1000, seed=11)
    tuned = [aligned + _random(300, 1000, seed=12), aligned + _random(300, 1000, seed=13)]
    out = _call("ties", {"density": 0.25, "weights": [0.4, 0.6]}, aligned, tuned)
    assert aligned.numel() > ties_module.BLOCK
    taus = [t - aligned for t in tuned]
    trimmed = [tau * (tau.abs() >= tau.abs().reshape(-1).kthvalue(tau.numel() - 75000 + 1).values) * w
               for tau, w in zip(taus, [0.4, 0.6], strict=True)]
    elected = (trimmed[0] + trimmed[1]).sign()
    agree = [(v.sign() == elected) & (v != 0) for v in trimmed]
    num = sum(v * m for v, m in zip(trimmed, agree, strict=True))
    den = sum(m * w for m, w in zip(agree, [0.4, 0.6], strict=True))
    expected = aligned + torch.where(den > 0, num / torch.where(den > 0, den, 1), 0)
    torch.testing.assert_close(out, expected)


def test_single_values_for_list_parameters_are_accepted():
    assert get_method("task_arithmetic").parse_params({"weights": 0.5}).weights == [0.5]
    assert get_method("safe_lora").parse_params({"targets": "q_proj"}).targets == ["q_proj"]
