import os
from pathlib import Path

import pytest


def _as_lab_dir(value) -> Path:
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    for attr in ("path", "lab_dir", "root"):
        if hasattr(value, attr):
            return Path(getattr(value, attr))
    if isinstance(value, dict):
        return Path(value.get("path") or value["lab_dir"])
    return Path(value)


@pytest.fixture(scope="session")
def sweep_lab(request, tmp_path_factory) -> Path:
    """The reduced organism (lab profile `tiny`: aligned, base, harmful-mix-0.1-full/-lora, both splits).

    Uses the shared `tiny_organism` fixture when the lab's fixtures provide it, else builds one here
    ($REALIGNKIT_TINY_LAB may name an already built tiny lab to iterate faster)."""
    if os.environ.get("REALIGNKIT_TINY_LAB"):
        return Path(os.environ["REALIGNKIT_TINY_LAB"])
    try:
        return _as_lab_dir(request.getfixturevalue("tiny_organism"))
    except pytest.FixtureLookupError:
        from realignkit.lab import build_lab

        out = tmp_path_factory.mktemp("pipeline-lab") / "lab"
        build_lab(out, profile="tiny", progress=False)
        return out


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The organism's matrices are tiny: extra torch threads only spin on the 2 shared cores (restored after)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
