import random

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from calibration.helpers import preference_rows
from realignkit.calibration import PreferencePair
from realignkit.calibration.mask_training import (
    MaskedWeight,
    MaskTrainingConfig,
    PreferenceData,
    PreferenceScope,
    ReferenceLogprobs,
    ScaledMerge,
    deterministic_mask,
    dpo_loss,
    evaluate_dpo_loss,
    init_mask_logits,
    mask_statistics,
    masked_forward,
    masked_task_vector,
    reference_logprobs,
    sample_concrete,
    sequence_logprobs,
    train_concrete_mask,
)
from realignkit.calibration.models import load_causal_lm, load_tokenizer


def test_masked_task_vector_formula():
    tau = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    mask = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    expected = tau * mask / 0.5  # mean(mask) = 0.5
    assert torch.equal(masked_task_vector(tau, mask), expected)
    assert torch.equal(masked_task_vector(tau, torch.zeros_like(tau)), torch.zeros_like(tau))


def test_concrete_samples_are_seeded_and_follow_the_logits():
    logits = torch.tensor([-3.0, 0.0, 3.0]).repeat(4000, 1)  # [4000, 3]
    first = sample_concrete(logits, 0.5, torch.Generator().manual_seed(1))
    again = sample_concrete(logits, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    means = first.mean(dim=0)
    assert means[0] < 0.15 and abs(float(means[1]) - 0.5) < 0.05 and means[2] > 0.85


def test_deterministic_masks():
    logits = torch.tensor([-1.0, 0.0, 2.0])
    torch.testing.assert_close(deterministic_mask(logits, "expectation"), torch.sigmoid(logits))
    assert deterministic_mask(logits, "threshold").tolist() == [0.0, 1.0, 1.0]  # logit 0 (undecided) keeps τ


def test_dpo_loss_formula():
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-1.5, -2.0]), torch.tensor([-2.0, -2.0])
    margin = (pc - pr) - (rc - rr)
    expected = -F.logsigmoid(0.1 * margin).mean()
    torch.testing.assert_close(dpo_loss(pc, pr, rc, rr, 0.1), expected)
    same = dpo_loss(rc, rr, rc, rr, 0.1)  # policy == reference: log 2
    torch.testing.assert_close(same, torch.tensor(0.6931472), rtol=1e-6, atol=1e-6)


def _task_vector_targets(aligned_model, tuned_dir, modules):
    tuned = load_file(str(tuned_dir / "model.safetensors"))
    params = dict(aligned_model.named_parameters())
    targets = []
    for module in modules:
        name = f"{module}.weight"
        tau = tuned[name].float() - params[name].detach()
        targets.append(MaskedWeight(name, "full", [{"tau": tau}], {"tau": name}))
    return targets


def test_training_lowers_the_dpo_loss(tiny_family):
    torch.manual_seed(0)
    model = load_causal_lm(tiny_family["aligned"])
    tokenizer = load_tokenizer(tiny_family["aligned"])
    pairs = [PreferencePair(**row) for row in preference_rows(8)]
    data = PreferenceData(tokenizer, pairs, max_length=64)
    modules = [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj", "o_proj")]
    modules += [f"model.layers.{i}.mlp.down_proj" for i in range(2)]
    targets = _task_vector_targets(model, tiny_family["tuned"], modules)
    merge = lambda deltas, name: deltas[0]  # noqa: E731 - one task vector, scale 1
    reference = reference_logprobs(model, data, 8, torch.device("cpu"))
    start = {k: deterministic_mask(v, "expectation") for k, v in init_mask_logits(targets).items()}
    scope = PreferenceScope(reference=reference)
    before = evaluate_dpo_loss(model, data, targets, start, merge, beta=0.1, scope=scope)
    config = MaskTrainingConfig(steps=30, lr=0.05, temperature=0.5, beta=0.1, batch_size=4, seed=0)
    weights_before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_concrete_mask(model, data, targets, merge, config, scope=scope, progress=False)
    final = {k: deterministic_mask(v, "expectation") for k, v in result.logits.items()}
    after = evaluate_dpo_loss(model, data, targets, final, merge, beta=0.1, scope=scope)
    assert len(result.losses) == 30
    print(f"DPO loss before {before:.4f} after {after:.4f}")
    assert after < before - 1e-3, (before, after)
    assert any(float(v.abs().max()) > 0.1 for v in result.logits.values())  # the logits moved
    for key, value in model.state_dict().items():  # the model itself stayed frozen
        assert torch.equal(value, weights_before[key]), key
    assert all(not p.requires_grad for p in model.parameters())


def test_empty_response_tokens_count_nothing(tiny_family):
    tokenizer = load_tokenizer(tiny_family["aligned"])
    data = PreferenceData(tokenizer, [PreferencePair("w1", "w2", "w3")], max_length=8)
    batch = data.batch([0], torch.device("cpu"))
    assert batch.response_mask.sum(dim=1).tolist()[0] >= 1  # the answer (and its end token) are scored
    assert int((batch.response_mask * (1 - batch.attention_mask)).sum()) == 0


@pytest.mark.parametrize("mode", ["expectation", "threshold"])
def test_zero_logits_reproduce_tuned(mode):
    """An untrained mask is the plain merge in both modes: m = 0.5 rescaled to 1, or the mode 1 (logit 0 keeps τ)."""
    logits = torch.zeros(3, 4)
    mask = deterministic_mask(logits, mode)
    tau = torch.randn(3, 4)
    torch.testing.assert_close(masked_task_vector(tau, mask), tau)


# ---------------------------------------------------------------- hooks, granularity, statistics


def _random_targets(model, kind, granularity):
    """Targets on q_proj / v_proj of both layers with random task vectors (full) or random factors (lora)."""
    gen = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())
    targets = []
    for module in [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]:
        name = f"{module}.weight"
        out_dim, in_dim = params[name].shape
        if kind == "full":
            pieces = [{"tau": torch.randn(out_dim, in_dim, generator=gen) * 0.05}]
            targets.append(MaskedWeight(name, "full", pieces, {"tau": name}, granularity=granularity))
        else:
            pieces = [
                {
                    "A": torch.randn(3, in_dim, generator=gen) * 0.2,
                    "B": torch.randn(out_dim, 3, generator=gen) * 0.2,
                }
            ]
            keys = {"A": f"{module}.lora_A.weight", "B": f"{module}.lora_B.weight"}
            targets.append(MaskedWeight(name, "lora", pieces, keys, scalings=[2.0], transpose=[False],
                                        granularity=granularity))  # fmt: skip
    return targets


@pytest.mark.parametrize(("kind", "granularity"), [("full", "entry"), ("full", "row"), ("full", "column"),
                                                   ("lora", "entry"), ("lora", "row")])  # fmt: skip
@pytest.mark.parametrize("factored", [True, False])
def test_hooked_forward_equals_the_materialized_weights(tiny_family, kind, granularity, factored):
    """masked_forward adds merge(τ ⊙ m / mean(m))·x in hooks (row/column/LoRA: without building τ ⊙ m) or swaps
    fused weights in; the log-probs and the mask gradients equal those of θ_aligned + the materialized delta."""
    model = load_causal_lm(tiny_family["aligned"])
    model.requires_grad_(False)
    data = PreferenceData(
        load_tokenizer(tiny_family["aligned"]), [PreferencePair(**r) for r in preference_rows(4)], 64
    )
    batch = data.batch(range(4), torch.device("cpu"))
    targets = _random_targets(model, kind, granularity)
    merge = ScaledMerge(0.7) if factored else (lambda deltas, name: deltas[0] * 0.7)
    assert targets[0].hooked(merge) is (factored and (kind, granularity) != ("full", "entry"))
    logits = init_mask_logits(targets)
    gen = torch.Generator().manual_seed(1)
    for value in logits.values():
        value.data.normal_(0, 2, generator=gen)
    grads = []
    for route in ("hooks", "weights"):
        masks = {k: sample_concrete(v, 0.5, torch.Generator().manual_seed(2)) for k, v in logits.items()}
        if route == "hooks":
            with masked_forward(model, targets, masks, merge) as weights:
                logp = sequence_logprobs(model, batch, weights)
        else:
            params = dict(model.named_parameters())
            overrides = {t.param_name: params[t.param_name] + t.delta(masks, merge) for t in targets}
            logp = sequence_logprobs(model, batch, overrides)
        grads.append(torch.autograd.grad(logp.sum(), list(logits.values())))
        if route == "hooks":
            hooked = logp.detach()
        else:
            torch.testing.assert_close(hooked, logp.detach(), rtol=1e-4, atol=1e-4)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    assert not any(m._forward_hooks for m in model.modules())  # the hooks are gone afterwards


def test_mask_shapes_per_granularity():
    tau = torch.zeros(6, 4)
    shapes = {g: MaskedWeight("w", "full", [{"tau": tau}], {"tau": "w"}, granularity=g).mask_shapes()["w"]
              for g in ("entry", "row", "column")}  # fmt: skip
    assert shapes == {"entry": (6, 4), "row": (6, 1), "column": (1, 4)}
    mask = torch.tensor([[1.0], [0.0], [1.0], [0.0], [0.0], [0.0]])  # rows 0 and 2 kept: mean 1/3
    tau = torch.arange(24.0).reshape(6, 4)
    expected = torch.zeros_like(tau)
    expected[[0, 2]] = tau[[0, 2]] * 3
    torch.testing.assert_close(masked_task_vector(tau, mask), expected)


def test_reference_logprobs_are_lazy_and_match_the_full_pass(tiny_family):
    model = load_causal_lm(tiny_family["aligned"])
    data = PreferenceData(
        load_tokenizer(tiny_family["aligned"]), [PreferencePair(**r) for r in preference_rows(8)], 64
    )
    lazy = ReferenceLogprobs(model, data, 3, torch.device("cpu"))
    part = lazy([5, 1, 5])
    assert set(lazy.values) == {1, 5}  # only the pairs asked for were scored
    full = reference_logprobs(model, data, 8, torch.device("cpu"))
    torch.testing.assert_close(part, full[[5, 1, 5]], rtol=1e-5, atol=1e-5)


def test_mask_statistics_count_entries_not_logits():
    row = MaskedWeight("a.weight", "full", [{"tau": torch.ones(4, 10)}], {"tau": "a"}, granularity="row")
    entry = MaskedWeight("b.weight", "full", [{"tau": torch.ones(2, 5)}], {"tau": "b"})
    logits = {"a": torch.tensor([[-5.0], [-5.0], [5.0], [0.0]]), "b": torch.full((2, 5), -3.0)}
    final = {k: deterministic_mask(v, "threshold") for k, v in logits.items()}
    stats = mask_statistics([row, entry], logits, final)
    # entries: a has 40 (10 per logit), b has 10; decided: a rows 0-2 (30) + all of b (10) = 40 of 50
    assert stats["mask_units"] == 14
    assert stats["decided_share"] == pytest.approx(40 / 50)
    assert stats["below_0.1_share"] == pytest.approx(30 / 50) and stats["above_0.9_share"] == pytest.approx(
        10 / 50
    )
    assert stats["kept_share"] == pytest.approx(20 / 50)  # rows 2 and 3 of a (logit 0 keeps τ)
    assert stats["dropped_tensors"] == 1  # b: every logit < 0
    assert stats["probability_histogram"]["[0,0.01)"] == pytest.approx(20 / 50)
    assert stats["probability_histogram"]["[0.5,0.75)"] == pytest.approx(10 / 50)


def test_sft_weight_adds_the_chosen_nll_to_the_training_loss(tiny_family):
    """Same seed, same first Concrete draw: the step-0 losses differ by w × the per-token NLL of the chosen answers."""
    model = load_causal_lm(tiny_family["aligned"])
    data = PreferenceData(
        load_tokenizer(tiny_family["aligned"]), [PreferencePair(**r) for r in preference_rows(4)], 64
    )
    targets = _random_targets(model, "full", "row")
    merge = ScaledMerge(1.0)
    losses = {}
    for weight in (0.0, 2.0):
        config = MaskTrainingConfig(steps=1, lr=0.1, batch_size=4, seed=3, sft_weight=weight)
        losses[weight] = train_concrete_mask(model, data, targets, merge, config, progress=False).losses[0]
    generator = torch.Generator().manual_seed(3)
    masks = {k: sample_concrete(v, 0.5, generator) for k, v in init_mask_logits(targets).items()}
    order = [0, 1, 2, 3]
    random.Random(3).shuffle(order)  # train_concrete_mask's pair order for seed 3
    batch = data.batch(order, torch.device("cpu"))
    with torch.no_grad(), masked_forward(model, targets, masks, merge) as weights:
        chosen = sequence_logprobs(model, batch, weights)[:4]
    tokens = (batch.response_mask[:4, 1:] * batch.attention_mask[:4, 1:]).sum(dim=1)
    nll = float((-chosen / tokens).mean())
    assert nll > 0
    assert losses[2.0] - losses[0.0] == pytest.approx(2.0 * nll, rel=1e-4)
