"""Model references as users and mergekit write them: a local dir, `org/name`, `org/name@revision`, `A+LORA`.

- A reference that names an existing directory is that directory, whatever it looks like.
- Otherwise `org/name` (optionally `@revision`: a branch, tag or commit) is a Hugging Face Hub repo. It is
  resolved through `huggingface_hub.snapshot_download`, which honours `HF_HOME`, `HF_HUB_CACHE` and the local
  cache; with `HF_HUB_OFFLINE=1` only the cache is read and a repo that is not there is one clear error. The
  environment is read at call time, so a change made after `huggingface_hub` was imported still counts.
- `MODEL+LORA` (mergekit's syntax) is a PEFT LoRA adapter on top of MODEL; each side is itself a local dir or a
  hub id with an optional `@revision`.

`resolve_reference` returns local paths plus provenance (repo id, requested revision, resolved commit) for
manifests and model cards. Nothing here loads weights.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realignkit.common.errors import BadInputError
from realignkit.common.fingerprint import is_adapter_dir
from realignkit.common.paths import resolve_recipe_path

# What a model dir needs; pickle weights are not fetched (realignkit refuses them unless --allow-pickle anyway).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ResolvedPath:
    """One side of a reference: where it is on disk and where it came from."""

    path: Path
    text: str  # as written (without the other side of a `+`)
    repo_id: str | None = None  # set for hub references
    revision: str | None = None  # as requested (None: the default branch)
    commit: str | None = None  # the snapshot that was used

    def describe(self) -> dict[str, Any]:
        repo_id, commit = self.repo_id, self.commit
        if repo_id is None:  # a snapshot dir of a hub cache given as a path still says where it came from
            repo_id, commit = hub_origin(self.path)
        if repo_id is None:
            return {"path": str(self.path)}
        return {"repo_id": repo_id, "revision": self.revision, "commit": commit, "path": str(self.path)}


def hub_origin(path: Path) -> tuple[str | None, str | None]:
    """(repo id, commit) of a `.../models--org--name/snapshots/<commit>` dir, else (None, None)."""
    parts = Path(path).parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--"):].replace("--", "/"), parts[-1]
    return None, None


@dataclass(frozen=True)
class ResolvedModel:
    """A resolved reference: the model, and the LoRA adapter on top of it (`MODEL+LORA`) if any."""

    text: str
    model: ResolvedPath
    lora: ResolvedPath | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        found = {"reference": self.text, "model": self.model.describe()}
        if self.lora is not None:
            found["lora"] = self.lora.describe()
        return found


def split_reference(text: str) -> tuple[str, str | None]:
    """`MODEL+LORA` -> (MODEL, LORA); a plain reference -> (text, None)."""
    parts = text.split("+")
    if len(parts) > 2 or not all(p.strip() for p in parts):
        raise BadInputError(f"model reference {text!r}: expected MODEL or MODEL+LORA (one '+')")
    return (parts[0].strip(), parts[1].strip() if len(parts) == 2 else None)


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hf_cache_dir() -> Path | None:
    """The hub cache huggingface_hub uses: $HF_HUB_CACHE, else $HF_HOME/hub, else None (its own default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return None


def looks_like_hub_id(text: str) -> bool:
    """`org/name` or `org/name@revision` (which is also a valid relative path: existing dirs win)."""
    name, at, revision = text.partition("@")
    return bool(_HUB_ID.match(name)) and (not at or bool(revision))


def recipe_model_text(value: str, recipe_dir: Path) -> str:
    """A model reference written in a recipe: each side of `MODEL+LORA` is a path relative to the recipe's dir
    (`~` expanded, absolute kept), unless no such directory exists and it reads as a hub id."""
    sides = [value] if resolve_recipe_path(value, recipe_dir).exists() else value.split("+")
    resolved = []
    for side in (s.strip() for s in sides):
        path = resolve_recipe_path(side, recipe_dir)
        resolved.append(side if not path.exists() and looks_like_hub_id(side) else str(path))
    return "+".join(resolved)


def _local_candidates(text: str, search_dirs: list[Path]) -> list[Path]:
    path = Path(text).expanduser()
    if path.is_absolute():
        return [path]
    return [d / path for d in search_dirs] + [Path.cwd() / path]


def _resolve_side(text: str, role: str, search_dirs: list[Path]) -> ResolvedPath:
    for candidate in _local_candidates(text, search_dirs):
        if candidate.is_dir():
            return ResolvedPath(path=candidate.absolute(), text=text)
    name, _, revision = text.partition("@")
    if not looks_like_hub_id(text):
        looked = ", ".join(str(p) for p in _local_candidates(text, search_dirs))
        raise BadInputError(f"{role} {text!r} does not exist (looked at {looked}) and is not a hub id (org/name)")
    return _from_hub(name, revision or None, role=role, text=text)


def _from_hub(repo_id: str, revision: str | None, *, role: str, text: str) -> ResolvedPath:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = hf_cache_dir()
    offline = hf_offline()
    where = str(cache) if cache is not None else "the default Hugging Face cache"
    try:
        found = snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=offline,
                                  allow_patterns=HUB_PATTERNS)
    except LocalEntryNotFoundError:
        state = "HF_HUB_OFFLINE is set" if offline else "the hub could not be reached"
        raise BadInputError(f"{role} {text!r}: not in the local hub cache ({where}) and {state}; download it "
                            f"first (hf download {repo_id}{f' --revision {revision}' if revision else ''})") from None
    except RevisionNotFoundError:
        raise BadInputError(f"{role} {text!r}: the hub repo {repo_id!r} has no revision {revision!r}") from None
    except GatedRepoError:
        raise BadInputError(f"{role} {text!r}: the hub repo is gated; accept its terms and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise BadInputError(f"{role} {text!r}: no such hub repo {repo_id!r} (or it is private: set HF_TOKEN)") from None
    except (HfHubHTTPError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(f"{role} {text!r}: hub download failed: {first}") from None
    path = Path(found)
    return ResolvedPath(path=path, text=text, repo_id=repo_id, revision=revision, commit=path.name)


def resolve_reference(text: str | os.PathLike[str], *, role: str, search_dirs: list[Path] | None = None
                      ) -> ResolvedModel:
    """Resolve a model reference to local directories (see the module docstring).

    `role` names the argument in errors (e.g. "--tuned"); relative local paths are looked up in `search_dirs`
    first (a recipe's directory), then in the current directory.
    """
    raw = os.fspath(text).strip()
    if not raw:
        raise BadInputError(f"{role}: empty model reference")
    dirs = list(search_dirs or [])
    whole = next((p for p in _local_candidates(raw, dirs) if p.is_dir()), None)
    if whole is not None:  # an existing dir wins, even if its name holds '+' or '@'
        return ResolvedModel(text=raw, model=ResolvedPath(path=whole.absolute(), text=raw))
    model_text, lora_text = split_reference(raw)
    model = _resolve_side(model_text, role, dirs)
    lora = _resolve_side(lora_text, f"{role} (LoRA part)", dirs) if lora_text is not None else None
    if lora is not None and not is_adapter_dir(lora.path):
        raise BadInputError(f"{role} {raw!r}: {lora_text!r} is not a PEFT LoRA adapter (no adapter_config.json)")
    return ResolvedModel(text=raw, model=model, lora=lora)


def is_reference(text: str | os.PathLike[str]) -> bool:
    """True for what only resolve_reference can open: not an existing path, but a hub id or `MODEL+LORA`."""
    raw = os.fspath(text).strip()
    return not Path(raw).expanduser().exists() and ("+" in raw or looks_like_hub_id(raw))
