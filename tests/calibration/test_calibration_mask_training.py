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
    deterministic_mask,
    dpo_loss,
    evaluate_dpo_loss,
    init_mask_logits,
    masked_task_vector,
    reference_logprobs,
    sample_concrete,
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
    assert deterministic_mask(logits, "threshold").tolist() == [0.0, 0.0, 1.0]


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
    before = evaluate_dpo_loss(model, data, targets, start, merge, beta=0.1, reference=reference)
    config = MaskTrainingConfig(steps=30, lr=0.05, temperature=0.5, beta=0.1, batch_size=4, seed=0)
    weights_before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_concrete_mask(model, data, targets, merge, config, reference=reference, progress=False)
    final = {k: deterministic_mask(v, "expectation") for k, v in result.logits.items()}
    after = evaluate_dpo_loss(model, data, targets, final, merge, beta=0.1, reference=reference)
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
def test_zero_logits_expectation_reproduces_tuned(mode):
    logits = torch.zeros(3, 4)
    mask = deterministic_mask(logits, mode)
    tau = torch.randn(3, 4)
    fused = masked_task_vector(tau, mask)
    if mode == "expectation":  # m = 0.5 everywhere: m / mean(m) = 1
        torch.testing.assert_close(fused, tau)
    else:  # sigmoid(0) = 0.5 is not > 0.5: the whole task vector is dropped
        assert torch.equal(fused, torch.zeros_like(tau))
