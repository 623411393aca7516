"""The real chat model's GGUF loader; it moved to `realignkit.evaluation.gguf_models` so that the default judge
(floor 2) can use the same model. Re-exported here for the lab's callers."""

from realignkit.evaluation.gguf_models import (
    INSTALL_HINT,
    SMOLLM2_DISTRIBUTION,
    SMOLLM2_FILE,
    SMOLLM2_NAME,
    cached_base_model,
    convert_gguf,
    file_sha256,
    load_gguf,
    packaged_smollm2_gguf,
    user_cache_dir,
)

__all__ = [
    "INSTALL_HINT",
    "SMOLLM2_DISTRIBUTION",
    "SMOLLM2_FILE",
    "SMOLLM2_NAME",
    "cached_base_model",
    "convert_gguf",
    "file_sha256",
    "load_gguf",
    "packaged_smollm2_gguf",
    "user_cache_dir",
]
