"""What every repair output says about itself: README.md (model card) and, where it applies, mergekit_config.yml.

The card dict (see report/model_card.py) is stored in realignkit.json under "card"; README.md is rendered from
it. Audit figures come from `--card-audit results.json` (an audit of this very output, checked by weights
fingerprint) or from a sweep (`add_audit_to_card` on the winner).
"""

from __future__ import annotations

import ast
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realignkit.common.errors import BadInputError
from realignkit.common.fingerprint import weights_fingerprint
from realignkit.methods.mergekit_export import mergekit_recipe
from realignkit.methods.registry import MethodParams, get_method
from realignkit.report.model_card import render_model_card

README = "README.md"
MERGEKIT_FILE = "mergekit_config.yml"
AUDIT_METRICS = {"harm (harmful rate)": "harmful_rate", "over-refusal rate": "over_refusal_rate",
                 "utility": "utility_accuracy"}


@dataclass
class CardFacts:
    method: str
    parameters: dict[str, Any]
    fixed: MethodParams | None  # None when parameters vary per tensor (a schedule)
    references: dict[str, Any]
    schedule: Any = None  # a mergekit recipe's schedule: display_name, mergekit_yaml(), describe()
    command: str = "repair"
    self_check: dict[str, Any] | None = None
    audit: dict[str, Any] | None = None
    adapter_output: bool = False


def method_paper(method: str) -> str:
    """The paper citation in the method module's docstring ("Paper:"/"Papers:" paragraph, else its second one)."""
    try:
        module = sys.modules[get_method(method).fn.__module__]
    except BadInputError:
        return ""
    doc = ast.get_docstring(ast.parse(Path(module.__file__ or "").read_text())) if module.__file__ else None
    paragraphs = [" ".join(p.split()) for p in (doc or module.__doc__ or "").split("\n\n") if p.strip()]
    cited = [p for p in paragraphs if p.startswith(("Paper:", "Papers:"))]
    return cited[0] if cited else (paragraphs[1] if len(paragraphs) > 1 else "")


def load_card_audit(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Before/after figures from an audit results.json (`realignkit audit OUT --baseline TUNED`)."""
    file = Path(path)
    try:
        results = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInputError(f"--card-audit {str(path)!r}: cannot read it as JSON ({exc})") from None
    if not isinstance(results, dict) or not isinstance(results.get("overall"), dict) or not results.get("model_fingerprint"):
        raise BadInputError(f"--card-audit {str(path)!r} is not an audit results.json (no overall / model_fingerprint)")
    columns, sides = [], []
    if isinstance(results.get("baseline_overall"), dict):
        columns.append(f"before: {results.get('baseline') or 'baseline'}")
        sides.append(results["baseline_overall"])
    columns.append("after: this model")
    sides.append(results["overall"])
    metrics = {label: [side.get(key) for side in sides] for label, key in AUDIT_METRICS.items()}
    return {"source": f"realignkit audit ({file.name}, judge {(results.get('judge') or {}).get('name', '?')})",
            "columns": columns, "metrics": metrics, "fingerprint": str(results["model_fingerprint"])}


def _check_audit_is_of(out_dir: Path, audit: dict[str, Any], aligned_dir: Path) -> None:
    """The figures must describe this output: its weights fingerprint equals the audited model's."""
    mine = weights_fingerprint(out_dir, base=aligned_dir)
    audited = audit["fingerprint"].split(":template")[0]
    if audited != mine:
        raise BadInputError("--card-audit: that results.json audited other weights than this output "
                            f"({audited[:20]}... vs {mine[:20]}...); audit this output (realignkit audit OUT "
                            "--baseline TUNED) and pass its results.json")


def _parents(references: dict[str, Any]) -> list[dict[str, Any]]:
    parents = []
    for role, found in references.items():
        model = found["model"]
        parents.append({"role": role, "reference": found["reference"], "repo_id": model.get("repo_id"),
                        "revision": model.get("revision"), "commit": model.get("commit"), "path": model.get("path"),
                        "lora": (found.get("lora") or {}).get("repo_id") or (found.get("lora") or {}).get("path"),
                        "lora_repo_id": (found.get("lora") or {}).get("repo_id")})
    return parents


def _out_dtype(out_dir: Path) -> str | None:
    config = out_dir / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    return data.get("dtype") or data.get("torch_dtype")


def build_card(out_dir: Path, facts: CardFacts) -> tuple[dict[str, Any], str | None]:
    """(card dict, mergekit recipe text or None)."""
    from realignkit import __version__

    name, parameters = facts.method, facts.parameters
    if facts.schedule is not None:
        display = facts.schedule.display_name()
        recipe = facts.schedule.mergekit_yaml()
        paper = method_paper(facts.schedule.paper_method())
        name, parameters = facts.schedule.config.merge_method, facts.schedule.describe()
    else:
        display = facts.method
        recipe = None
        if facts.fixed is not None and not facts.adapter_output:
            recipe = mergekit_recipe(facts.method, facts.fixed, facts.references, _out_dtype(out_dir))
        paper = method_paper(facts.method)
    card = {
        "title": out_dir.name if not out_dir.name.startswith(".") else "realignkit output",
        "version": __version__,
        "method": {"name": name, "display": display, "paper": paper, "parameters": parameters},
        "parents": _parents(facts.references),
        "mergekit_config": MERGEKIT_FILE if recipe is not None else None,
        "command": facts.command,
        "self_check": facts.self_check,
        "audit": {k: v for k, v in facts.audit.items() if k != "fingerprint"} if facts.audit else None,
    }
    return card, recipe


def write_card_files(out_dir: Path, facts: CardFacts, *, aligned_dir: Path, final_name: str | None = None
                     ) -> dict[str, Any]:
    """Write README.md (and mergekit_config.yml) into the (temporary) output dir; return the card dict."""
    if facts.audit is not None:
        _check_audit_is_of(out_dir, facts.audit, aligned_dir)
    card, recipe = build_card(out_dir, facts)
    if final_name:
        card["title"] = final_name
    if recipe is not None:
        (out_dir / MERGEKIT_FILE).write_text(recipe)
    (out_dir / README).write_text(render_model_card(card))
    return card


def add_audit_to_card(model_dir: Path, audit: dict[str, Any]) -> None:
    """Put audit figures into an existing output's card (realignkit.json "card" + README.md, each replaced whole)."""
    manifest_path = model_dir / "realignkit.json"
    manifest = json.loads(manifest_path.read_text())
    card = manifest.get("card")
    if not isinstance(card, dict):
        return
    card["audit"] = audit
    _replace(manifest_path, json.dumps(manifest, indent=2, default=str) + "\n")
    _replace(model_dir / README, render_model_card(card))


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
