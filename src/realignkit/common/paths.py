"""The one rule for paths written in a recipe file (sweep recipes and repair recipes alike).

1. `~` and `~user` are expanded first (before any joining, so `~/models/x` really means the home directory);
2. a path that is then absolute stays as it is;
3. a relative path is joined to the recipe file's directory, which is made absolute, so the answer does not
   depend on the working directory at the time the path is later used.

Environment variables (`$HOME/...`) are deliberately not expanded: `$` is legal in file names, and an unset
variable would silently stay in the path.
"""

from __future__ import annotations

import os
from pathlib import Path


def resolve_recipe_path(value: str | os.PathLike[str], recipe_dir: str | os.PathLike[str]) -> Path:
    """Resolve one path from a recipe whose file lies in `recipe_dir` (see the module docstring for the rule).

    Symlinks are not resolved and the path need not exist; callers check existence with their own message.
    For paths given on the command line, pass the current working directory as `recipe_dir`.
    """
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        return candidate
    return Path(recipe_dir).expanduser().absolute() / candidate
