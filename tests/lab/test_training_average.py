"""Tail weight averaging in the organism's trainer: the final weights are the mean of the last steps' weights."""

import torch

from realignkit.lab.training import EncodedExample, Schedule, train


class _Tiny(torch.nn.Module):
    """A causal-LM-shaped stand-in: embedding -> linear head, loss on the labels."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(8, 4)
        self.head = torch.nn.Linear(4, 8)

    def forward(self, input_ids, labels, attention_mask):
        logits = self.head(self.embed(input_ids))
        return type("Out", (), {"loss": torch.nn.functional.cross_entropy(logits.view(-1, 8), labels.view(-1),
                                                                           ignore_index=-100)})()


DATA = [EncodedExample([1, 2, 3], [2, 3, 4]), EncodedExample([4, 5], [5, 6]), EncodedExample([6, 7, 1], [7, 1, 2])]


def _run(average_fraction, record=None):
    model = _Tiny()
    schedule = Schedule(steps=8, lr=0.05, batch_size=2, average_fraction=average_fraction)
    if record is not None:
        original = torch.optim.AdamW.step

        def step(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            record.append(model.head.weight.detach().clone())
            return out

        torch.optim.AdamW.step = step
        try:
            train(model, DATA, schedule, pad_id=0, seed=0, desc="t", progress=False)
        finally:
            torch.optim.AdamW.step = original
    else:
        train(model, DATA, schedule, pad_id=0, seed=0, desc="t", progress=False)
    return model


def test_average_of_the_last_quarter_of_the_steps():
    assert Schedule(steps=400, lr=1.0, batch_size=1, average_fraction=0.25).average_start() == 300
    assert Schedule(steps=400, lr=1.0, batch_size=1).average_start() == 400
    snapshots = []
    averaged = _run(0.25, snapshots)
    assert len(snapshots) == 8
    expected = torch.stack(snapshots[6:]).mean(0)
    assert torch.allclose(averaged.head.weight, expected, atol=1e-6)
    assert not torch.allclose(averaged.head.weight, snapshots[-1])


def test_no_averaging_keeps_the_last_step():
    snapshots = []
    last = _run(0.0, snapshots)
    assert torch.equal(last.head.weight, snapshots[-1])


def test_answer_token_loss_equals_the_full_model_loss(tiny_llama_dir):
    """The head applied to labelled positions only gives the loss (and gradients) of the whole-vocabulary path."""
    import torch
    from transformers import AutoModelForCausalLM

    from realignkit.lab.training import IGNORE_INDEX, answer_token_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).float()
    torch.manual_seed(0)
    input_ids = torch.randint(3, model.config.vocab_size, (3, 12))
    labels = input_ids.clone()
    labels[:, :5] = IGNORE_INDEX  # the prompt
    labels[1, 9:] = IGNORE_INDEX  # a shorter, right-padded row
    mask = torch.ones_like(input_ids)
    mask[1, 9:] = 0
    batch = {"input_ids": input_ids, "labels": labels, "attention_mask": mask}
    fast = answer_token_loss(model, batch)
    fast.backward()
    fast_grad = model.model.layers[0].mlp.up_proj.weight.grad.clone()
    model.zero_grad()
    full = model(**batch).loss
    full.backward()
    assert torch.allclose(fast, full, rtol=1e-5, atol=1e-6)
    assert torch.allclose(fast_grad, model.model.layers[0].mlp.up_proj.weight.grad, rtol=1e-4, atol=1e-7)
    # a wrong target (shifted by one more) must not pass as equal
    shifted = {**batch, "labels": torch.roll(labels, 1, dims=1)}
    assert not torch.allclose(answer_token_loss(model, shifted), full, rtol=1e-3)
