"""`--executor` and its resources, checked before any work starts (read by both executors and the CLI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from realignkit.common import BadInputError

EXECUTORS = ("local", "ray")


class ExecutorOptions(BaseModel):
    """`--executor` and its resources. Not part of the run's identity: a sweep started on one executor resumes
    on the other."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["local", "ray"] = "local"
    ray_address: str | None = None  # None: start a local Ray instance for this command, and shut it down after
    ray_num_cpus: int | None = Field(None, ge=1)  # CPUs of that local instance (default: all)
    cpus_per_candidate: float = Field(1.0, gt=0)
    gpus_per_candidate: float = Field(0.0, ge=0)
    memory_per_candidate: int | None = Field(None, ge=1)  # bytes Ray reserves per task (scheduling only)

    def check(self, backend: str, tensor_parallel_size: int) -> None:
        """Refuse contradictory settings before any work starts."""
        ray_only = {"--ray-address": self.ray_address, "--ray-num-cpus": self.ray_num_cpus,
                    "--gpus-per-candidate": self.gpus_per_candidate or None,
                    "--memory-per-candidate": self.memory_per_candidate,
                    "--cpus-per-candidate": None if self.cpus_per_candidate == 1.0 else self.cpus_per_candidate}
        given = [flag for flag, value in ray_only.items() if value is not None]
        if self.name == "local" and given:
            raise BadInputError(f"{', '.join(given)} need --executor ray")
        if self.ray_address is not None and self.ray_num_cpus is not None:
            raise BadInputError("--ray-num-cpus sizes a local Ray instance; a cluster at --ray-address has its own")
        if self.name == "ray" and backend == "vllm" and self.gpus_per_candidate < tensor_parallel_size:
            raise BadInputError(f"--backend vllm with --tensor-parallel-size {tensor_parallel_size} needs "
                                f"--gpus-per-candidate {tensor_parallel_size} or more (got {self.gpus_per_candidate:g})")


def parse_memory(text: str | None) -> int | None:
    """`--memory-per-candidate`: bytes, or a number with K/M/G/T (powers of 1000) or Ki/Mi/Gi/Ti (of 1024), B optional."""
    if text is None:
        return None
    units = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
             "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
    cleaned = text.strip().lower().removesuffix("b")
    number = cleaned.rstrip("kmgti")
    unit = cleaned[len(number):]
    try:
        value = float(number) * units[unit]
    except (KeyError, ValueError):
        raise BadInputError(f"--memory-per-candidate {text!r}: expected e.g. 16GB, 64GiB or a number of bytes") from None
    if value < 1:
        raise BadInputError(f"--memory-per-candidate {text!r} must be positive")
    return int(value)
