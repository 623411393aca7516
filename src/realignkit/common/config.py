"""The one way a user's YAML file and a typed config become settings, or one line of error.

- `read_yaml` / `read_yaml_mapping`: parse a recipe file; a missing file or bad YAML is one `BadInputError` line;
- `resolve_recipe_path` (from `common.paths`): a path written in a recipe is relative to the recipe's directory;
- `validation_problems` / `validation_error_line`: a pydantic `ValidationError` as (where, message) pairs, or
  as one line, with a did-you-mean hint for an unknown key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realignkit.common.errors import BadInputError, closest_match
from realignkit.common.paths import resolve_recipe_path

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = ["Problem", "read_yaml", "read_yaml_mapping", "resolve_recipe_path", "validation_error_line",
           "validation_problems"]


def read_yaml(path: str | os.PathLike[str], *, missing: str) -> Any:
    """The parsed content of a YAML file (None when empty); `missing` is the error line when it is not a file."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise BadInputError(missing)
    try:
        return yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise BadInputError(f"recipe {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None


def read_yaml_mapping(path: str | os.PathLike[str], *, missing: str, not_mapping: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping ({} when empty); `not_mapping` may name the `{type}` found."""
    data = read_yaml(path, missing=missing)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInputError(not_mapping.format(type=type(data).__name__))
    return data


@dataclass(frozen=True)
class Problem:
    """One problem of a pydantic validation: where (dotted location, "" for the whole object), pydantic's
    message (without its "Value error, " prefix) and whether it is an unknown key (extra="forbid")."""

    where: str
    message: str
    unknown_key: bool

    @property
    def key(self) -> str:
        return self.where.rsplit(".", 1)[-1]


def validation_problems(exc: ValidationError) -> list[Problem]:
    return [Problem(".".join(str(part) for part in error["loc"]), error["msg"].removeprefix("Value error, "),
                    error["type"] == "extra_forbidden") for error in exc.errors()]


def validation_error_line(exc: ValidationError, *, known: Iterable[str] = (), whole: str = "config") -> str:
    """Every problem as `where: message` joined by "; " (`whole` names the object itself); an unknown key reads
    `where: unknown key` with a did-you-mean hint from `known`."""
    names = list(known)
    parts = []
    for problem in validation_problems(exc):
        message = f"unknown key{closest_match(problem.key, names)}" if problem.unknown_key else problem.message
        parts.append(f"{problem.where or whole}: {message}")
    return "; ".join(parts)
