"""PEFT LoRA adapter directories as a `tuned` model: θ_tuned = θ_aligned + ΔW with ΔW = B·A·scaling.

scaling = lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA; `rank_pattern` / `alpha_pattern` override r and
alpha per module (PEFT's matching rule: the pattern matches the module name's tail after a dot);
`fan_in_fan_out` stores the base weight transposed (Conv1D), so ΔW is transposed too.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from realignkit.checkpoints.names import canonical_index, canonical_name, module_matches, parse_lora_key
from realignkit.checkpoints.quantized import check_tensors
from realignkit.checkpoints.safetensors_io import read_header, read_tensor
from realignkit.common.errors import BadInputError
from realignkit.common.fingerprint import ADAPTER_CONFIG

if TYPE_CHECKING:
    from realignkit.checkpoints.sources import TensorSource

ADAPTER_SAFE = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"


@dataclass(frozen=True)
class LoraFactors:
    """One adapted module: ΔW = B @ A * scaling (transposed when fan_in_fan_out or for embeddings)."""

    a: torch.Tensor  # [r, in]   (embeddings: [r, num_embeddings])
    b: torch.Tensor  # [out, r]  (embeddings: [dim, r])
    scaling: float
    transpose: bool
    a_key: str = ""  # the keys in adapter_model.safetensors, to write a modified adapter back
    b_key: str = ""

    def delta(self, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """ΔW, or only its rows [start, stop) (computed from the matching slice of B, or of A when transposed)."""
        if rows is None:
            product = self.b.float() @ self.a.float()  # [out, in]
            return (product.T if self.transpose else product) * self.scaling
        start, stop = rows
        if self.transpose:  # ΔW = (B·A)ᵀ: its rows are columns of B·A
            return (self.b.float() @ self.a[:, start:stop].float()).T * self.scaling
        return (self.b[start:stop].float() @ self.a.float()) * self.scaling


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's get_pattern_key: a key matches when the module name ends with it (after a dot)."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


class LoraAdapterSource:
    """A LoRA adapter over an aligned model; exposes the aligned names with the adapter folded in."""

    is_adapter = True

    def __init__(self, path: str | os.PathLike[str], aligned: TensorSource, *, role: str = "tuned", allow_pickle: bool = False):
        self.path = Path(path)
        self.role = role
        self.aligned = aligned
        self.config = self._read_config()
        raw = self._read_weights(allow_pickle)
        # The base (`aligned`) is checked when opened; this catches quantised tensors stored in the adapter
        # itself (e.g. modules_to_save), which would otherwise be copied as if they were weights.
        check_tensors(((key, tensor.dtype) for key, tensor in raw.items()), f"--{role} {str(self.path)!r}")
        self.raw = raw  # every stored tensor by its adapter key (adapters are small)
        self.target_modules = self.config.get("target_modules") or []
        self._factors = self._build_factors(raw)
        if not self._factors and not self._full:
            raise BadInputError(f"adapter {str(self.path)!r} contains no LoRA weights")

    def _read_config(self) -> dict[str, Any]:
        try:
            config = json.loads((self.path / ADAPTER_CONFIG).read_text())
        except json.JSONDecodeError:
            raise BadInputError(f"{ADAPTER_CONFIG} in {str(self.path)!r} is not valid JSON") from None
        if config.get("peft_type", "LORA") != "LORA":
            raise BadInputError(f"adapter {str(self.path)!r} is {config.get('peft_type')}, only LoRA is supported")
        if config.get("use_dora"):
            raise BadInputError(f"adapter {str(self.path)!r} uses DoRA, which is not supported")
        return config

    def _read_weights(self, allow_pickle: bool) -> dict[str, torch.Tensor]:
        safe, pickled = self.path / ADAPTER_SAFE, self.path / ADAPTER_PICKLE
        if safe.is_file():
            infos, _ = read_header(safe)
            fd = os.open(safe, os.O_RDONLY)
            try:  # adapters are small: read them whole
                return {name: read_tensor(fd, info) for name, info in infos.items()}
            finally:
                os.close(fd)
        if pickled.is_file():
            if not allow_pickle:
                raise BadInputError(
                    f"adapter {str(self.path)!r} has only pickle weights ({ADAPTER_PICKLE}); pass --allow-pickle"
                )
            try:
                state = torch.load(pickled, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise BadInputError(f"cannot load {str(pickled)!r}: {str(exc).splitlines()[0]}") from None
            return dict(state)
        raise BadInputError(f"adapter {str(self.path)!r} has no {ADAPTER_SAFE}")

    def _scaling(self, module: str, rank: int) -> float:
        alpha = _pattern_value(self.config.get("alpha_pattern") or {}, module, self.config.get("lora_alpha", 8))
        if self.config.get("use_rslora"):
            return float(alpha) / math.sqrt(rank)
        return float(alpha) / rank

    def _build_factors(self, raw: dict[str, torch.Tensor]) -> dict[str, LoraFactors]:
        aligned_index = canonical_index(self.aligned.names(), source=f"--aligned {self.aligned.path}")
        parts: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}  # module -> part -> (adapter key, tensor)
        self._full: dict[str, torch.Tensor] = {}  # modules_to_save etc.: whole replacement tensors
        for key, tensor in raw.items():
            parsed = parse_lora_key(key)
            if parsed is None:
                self._full[self._aligned_name(key, aligned_index)] = tensor
                continue
            module, part = parsed
            parts.setdefault(module, {})[part] = (key, tensor)
        factors: dict[str, LoraFactors] = {}
        for module, found in parts.items():
            aligned_name = self._aligned_name(f"{module}.weight", aligned_index)
            factors[aligned_name] = self._module_factors(module, found, aligned_name)
        for name, tensor in self._full.items():
            self._check_shape(name, tuple(tensor.shape), self.aligned.shape(name))
        return factors

    def _aligned_name(self, key: str, aligned_index: dict[str, str]) -> str:
        name = aligned_index.get(canonical_name(key.replace(".modules_to_save.default", "")))
        if name is None:
            raise BadInputError(
                f"adapter does not match aligned: {key!r} has no tensor in --aligned {str(self.aligned.path)!r}"
            )
        return name

    def _module_factors(
        self, module: str, found: dict[str, tuple[str, torch.Tensor]], aligned_name: str
    ) -> LoraFactors:
        embedding = "embedding_A" in found
        a_part, b_part = ("embedding_A", "embedding_B") if embedding else ("A", "B")
        if a_part not in found or b_part not in found:
            raise BadInputError(f"adapter {str(self.path)!r}: module {module!r} lacks its lora_A or lora_B")
        (a_key, a), (b_key, b) = found[a_part], found[b_part]
        if self.target_modules and not module_matches(module, self.target_modules):
            raise BadInputError(f"adapter {str(self.path)!r}: module {module!r} is not in its target_modules")
        rank = a.shape[0]
        if b.shape[-1] != rank:
            raise BadInputError(f"adapter {str(self.path)!r}: {module!r} has lora_A rank {rank}, lora_B {b.shape}")
        transpose = embedding or bool(self.config.get("fan_in_fan_out"))
        expected = (a.shape[1], b.shape[0]) if transpose else (b.shape[0], a.shape[1])
        self._check_shape(aligned_name, expected, self.aligned.shape(aligned_name))
        return LoraFactors(
            a=a, b=b, scaling=self._scaling(module, rank), transpose=transpose, a_key=a_key, b_key=b_key
        )

    def _check_shape(self, name: str, adapter_shape: tuple[int, ...], aligned_shape: tuple[int, ...]) -> None:
        if tuple(adapter_shape) != tuple(aligned_shape):
            raise BadInputError(
                f"adapter does not match aligned: {name!r} is {list(aligned_shape)} in --aligned but the adapter "
                f"{str(self.path)!r} implies {list(adapter_shape)}"
            )

    # -- TensorSource interface (aligned names, adapter folded in) --
    def names(self) -> list[str]:
        return self.aligned.names()

    def __contains__(self, name: str) -> bool:
        return name in self.aligned

    def shape(self, name: str) -> tuple[int, ...]:
        return self.aligned.shape(name)

    def dtype(self, name: str) -> torch.dtype:
        return self.aligned.dtype(name)

    def adapted_names(self) -> list[str]:
        return sorted(set(self._factors) | set(self._full))

    def lora_factors(self, name: str) -> LoraFactors | None:
        return self._factors.get(name)

    def replacement(self, name: str) -> torch.Tensor | None:
        """A whole tensor stored in the adapter (modules_to_save), if any."""
        return self._full.get(name)

    def delta(self, name: str) -> torch.Tensor | None:
        """ΔW in fp32 for an adapted aligned tensor name, else None."""
        factors = self._factors.get(name)
        return factors.delta() if factors is not None else None

    def tuned_from_aligned(
        self, name: str, aligned_fp32: torch.Tensor, rows: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """θ_tuned in fp32 given θ_aligned in fp32 (so the aligned tensor is read only once).

        With `rows`, aligned_fp32 holds only rows [start, stop) and so does the result.
        """
        if name in self._full:
            full = self._full[name]
            return (full if rows is None else full[rows[0] : rows[1]]).float()
        factors = self._factors.get(name)
        return aligned_fp32 if factors is None else aligned_fp32 + factors.delta(rows)

    def get(self, name: str) -> torch.Tensor:
        merged = self.tuned_from_aligned(name, self.aligned.get(name).float())
        return merged.to(self.aligned.dtype(name))

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": "lora",
            "r": self.config.get("r"),
            "lora_alpha": self.config.get("lora_alpha"),
            "use_rslora": bool(self.config.get("use_rslora")),
            "adapted_tensors": len(self._factors),
        }
