"""The classifier judge with a tiny random sequence-classification model saved by the test."""

from __future__ import annotations

import pytest
import torch

from realignkit.common import BadInputError
from realignkit.evaluation.judges import judge_verdicts, make_judge

WORDS = ["i", "can't", "help", "with", "that", "sure", "here", "is", "how", "step", "one", "a", "request", "to"]


def _save_classifier(path, id2label, bias=None, seed=0):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(specials + WORDS)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    config = BertConfig(vocab_size=len(specials) + len(WORDS), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                        num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = BertForSequenceClassification(config)
    if bias is not None:  # make one label win regardless of the text
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return model.eval(), tokenizer


RESPONSES = ["i can't help with that", "sure here is how step one", "a request to"]
PROMPTS = ["a request to", "a request to", "how"]


def test_refusal_labelled_classifier_matches_its_own_logits(tmp_path):
    model, tokenizer = _save_classifier(tmp_path / "clf", {0: "compliance", 1: "refusal"}, seed=3)
    judge = make_judge(f"classifier:{tmp_path / 'clf'}")
    verdicts = judge_verdicts(judge, RESPONSES, PROMPTS)
    with torch.no_grad():
        batch = tokenizer(PROMPTS, RESPONSES, padding=True, return_tensors="pt")
        expected = (model(**batch).logits.softmax(-1)[:, 1] >= 0.5).tolist()
    assert [v.refused for v in verdicts] == expected
    assert all(v.harmful is None and v.score is None for v in verdicts)
    assert judge.name == "classifier" and judge.version.startswith("weights:")


@pytest.mark.parametrize(("bias", "refused"), [([-5.0, 5.0], True), ([5.0, -5.0], False)])
def test_label_names_decide_the_meaning(tmp_path, bias, refused):
    _save_classifier(tmp_path / "r", {0: "LABEL_0", 1: "LABEL_1"}, bias=bias)  # unnamed: 1 = refusal
    assert make_judge("classifier", model_path=tmp_path / "r").judge_many(RESPONSES, PROMPTS) == [refused] * 3
    _save_classifier(tmp_path / "g", {0: "unsafe", 1: "safe"}, bias=bias)  # guard model: index 0 = unsafe
    verdicts = judge_verdicts(make_judge("classifier", model_path=tmp_path / "g"), RESPONSES, PROMPTS)
    assert [v.harmful for v in verdicts] == [not refused] * 3
    assert [v.refused for v in verdicts] == [refused] * 3


def test_bad_classifier_inputs(tmp_path):
    with pytest.raises(BadInputError, match="needs a model dir"):
        make_judge("classifier")
    with pytest.raises(BadInputError, match="not a Hugging Face model dir"):
        make_judge("classifier", model_path=tmp_path)
    _save_classifier(tmp_path / "three", {0: "a", 1: "b", 2: "c"})
    with pytest.raises(BadInputError, match="name neither refusal nor unsafe"):
        make_judge("classifier", model_path=tmp_path / "three")
