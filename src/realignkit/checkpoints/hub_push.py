"""`--push-to-hub REPO`: upload a finished output dir to a Hugging Face Hub model repo.

The token comes from the environment only (`HF_TOKEN`, or `HUGGING_FACE_HUB_TOKEN`) and is never printed or
written: error messages have it masked. `HF_ENDPOINT` selects another hub (e.g. a private one). Nothing is pushed
unless the flag is given; `check_push_possible` runs before any work so a bad setup fails first.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from realignkit.checkpoints.references import hf_offline
from realignkit.common.errors import BadInputError

TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


def _token() -> str | None:
    return next((os.environ[name] for name in TOKEN_VARIABLES if os.environ.get(name)), None)


def check_push_possible(repo_id: str) -> None:
    """Fail before any work: a malformed repo id, no token in the environment, or offline mode."""
    if not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise BadInputError(f"--push-to-hub {repo_id!r} is not a hub repo id (org/name)")
    if _token() is None:
        raise BadInputError("--push-to-hub needs a write token in the environment (HF_TOKEN); it is never "
                            "taken from the command line")
    if hf_offline():
        raise BadInputError("--push-to-hub cannot work with HF_HUB_OFFLINE set")


def _masked(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def push_folder(folder: str | os.PathLike[str], repo_id: str, *, private: bool = False,
                commit_message: str | None = None) -> str:
    """Create the repo if needed and upload every file of `folder` in one commit; the commit URL (or id)."""
    from huggingface_hub import HfApi

    check_push_possible(repo_id)
    token = _token() or ""
    path = Path(folder)
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(path), repo_type="model",
                                 commit_message=commit_message or f"realignkit: upload {path.name}")
    except Exception as exc:  # every failure is one line, with the token masked
        first = _masked(str(exc), token).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(f"--push-to-hub {repo_id!r} failed ({first}); the output is still at {str(path)!r}") from None
    return str(getattr(info, "commit_url", None) or getattr(info, "oid", "") or repo_id)
