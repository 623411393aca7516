"""Calibration for data-driven repairs: JSONL loaders, Wanda input-norm statistics, SOMF mask training.

Floor 2: imports only `realignkit.common` and third-party libraries.
"""

from realignkit.calibration.calibration_files import (
    PreferencePair,
    PromptResponse,
    as_prompt_responses,
    load_preference_jsonl,
    load_prompt_response_jsonl,
)
from realignkit.calibration.targets import DEFAULT_ATTENTION_TARGETS, normalize_globs, select_targets
from realignkit.calibration.wanda import (
    STATS_FILENAME,
    canonical_module_name,
    collect_input_norms,
    linear_modules,
    load_input_norms,
    outlier_features,
    save_input_norms,
)

__all__ = [
    "DEFAULT_ATTENTION_TARGETS",
    "STATS_FILENAME",
    "PreferencePair",
    "PromptResponse",
    "as_prompt_responses",
    "canonical_module_name",
    "collect_input_norms",
    "linear_modules",
    "load_input_norms",
    "load_preference_jsonl",
    "load_prompt_response_jsonl",
    "normalize_globs",
    "outlier_features",
    "save_input_norms",
    "select_targets",
]
