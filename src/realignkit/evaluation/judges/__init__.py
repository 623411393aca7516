"""Judges decide, per (prompt, response), whether the model refused (and, for some, how harmful it was)."""

from realignkit.evaluation.judges.refusal import RefusalJudge

__all__ = ["RefusalJudge"]
