"""Floor 0: helpers every other package may use (errors, atomic outputs, manifests, the weights fingerprint that
keys every cache). Imports nothing of ours."""

from realignkit.common.atomic import atomic_output_dir, check_output_not_inside_inputs, prepare_output_dir
from realignkit.common.errors import BadInputError, closest_match
from realignkit.common.fingerprint import (
    is_adapter_dir,
    state_dict_fingerprint,
    tensors_fingerprint,
    weights_fingerprint,
)
from realignkit.common.manifest import file_fingerprint, path_fingerprint, write_manifest

__all__ = [
    "BadInputError",
    "atomic_output_dir",
    "check_output_not_inside_inputs",
    "closest_match",
    "file_fingerprint",
    "is_adapter_dir",
    "path_fingerprint",
    "prepare_output_dir",
    "state_dict_fingerprint",
    "tensors_fingerprint",
    "weights_fingerprint",
    "write_manifest",
]
