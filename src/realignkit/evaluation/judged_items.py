"""Run a model over suite items and judge each answer: the lab's simple loop (the audit and the sweep go through
`audit.Auditor`, with its generation cache and backends)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from realignkit.evaluation.generation import generate_responses
from realignkit.evaluation.judges.refusal import RefusalJudge
from realignkit.evaluation.scoring import answer_is_correct
from realignkit.evaluation.suite_items import SuiteItem

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from realignkit.evaluation.judges.base import Judge


@dataclass
class ItemResult:
    item: SuiteItem
    response: str
    refused: bool
    correct: bool | None  # utility items only

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self.item)
        row.update(response=self.response, refused=self.refused, correct=self.correct)
        return row


def judge_items(items: Sequence[SuiteItem], responses: Sequence[str], judge: Judge | None = None) -> list[ItemResult]:
    judge = judge or RefusalJudge()
    refused = judge.judge_many(list(responses), [item.prompt for item in items])
    return [
        ItemResult(
            item=item,
            response=response,
            refused=is_refused,
            correct=answer_is_correct(response, item.answer, item.meta.get("match", "contains")) if item.kind == "utility" and item.answer else None,
        )
        for item, response, is_refused in zip(items, responses, refused, strict=True)
    ]


def evaluate_items(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[SuiteItem],
    *,
    judge: Judge | None = None,
    max_new_tokens: int = 48,
    batch_size: int = 64,
    system_prompt: str | None = None,
    progress: bool = False,
) -> list[ItemResult]:
    """Generate greedily for every item, then judge refusal and utility correctness."""
    responses = generate_responses(
        model,
        tokenizer,
        [item.prompt for item in items],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        system_prompt=system_prompt,
        progress=progress,
    )
    return judge_items(items, responses, judge)


def rate(results: Sequence[ItemResult], attribute: str) -> float | None:
    """Share of results whose `attribute` (refused/correct) is True; None for an empty list."""
    values = [getattr(r, attribute) for r in results if getattr(r, attribute) is not None]
    return sum(bool(v) for v in values) / len(values) if values else None
