"""The model card (README.md) of a model realignkit wrote, rendered only from its card dict.

The card dict lives in the output's realignkit.json under "card" (methods/card.py builds it), so a card can be
re-rendered later, e.g. when a sweep adds the winner's audit figures. Keys:

    version, method {name, display, paper, parameters}, parents [{role, reference, repo_id, revision, commit,
    path, lora, lora_repo_id}], mergekit_config (file name or None), command, self_check {broken, ...} or None,
    audit {source, columns [labels], metrics {label: [value per column]}} or None
"""

from __future__ import annotations

import json
from typing import Any

AUDIT_HELP = ("harm: share of harmful prompts answered (lower is better); over-refusal: share of benign prompts "
              "that only sound unsafe refused (lower is better); utility: task accuracy (higher is better).")


def _front_matter(card: dict[str, Any]) -> list[str]:
    parents = card.get("parents", [])
    hub_parents = sorted({repo for p in parents for repo in (p.get("repo_id"), p.get("lora_repo_id")) if repo})
    lines = ["---", "library_name: transformers", "tags:", "- realignkit", "- safety-realignment",
             f"- {card['method']['name']}"]
    if card.get("mergekit_config"):
        lines += ["- merge", "- mergekit"]
    if hub_parents:
        lines += ["base_model:"] + [f"- {repo}" for repo in hub_parents]
    return lines + ["---", ""]


def _parent_row(parent: dict[str, Any]) -> str:
    if parent.get("repo_id"):
        where = f"[{parent['repo_id']}](https://huggingface.co/{parent['repo_id']})"
        revision = f"{parent.get('revision') or 'main'} (commit {str(parent.get('commit') or '?')[:12]})"
    else:
        where, revision = f"`{parent.get('path')}`", "local"
    lora = f"; LoRA `{parent['lora']}`" if parent.get("lora") else ""
    return f"| {parent['role']} | {where}{lora} | {revision} |"


def _format_value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _audit_section(audit: dict[str, Any]) -> list[str]:
    columns = audit["columns"]
    lines = ["## Safety audit", "", f"Source: {audit['source']}.", "",
             "| metric | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for label, values in audit["metrics"].items():
        lines.append(f"| {label} | " + " | ".join(_format_value(v) for v in values) + " |")
    return lines + ["", AUDIT_HELP, ""]


def render_model_card(card: dict[str, Any]) -> str:
    """Markdown with Hugging Face front matter: parents, method + paper + parameters, audit figures, how to
    reproduce."""
    method = card["method"]
    lines = _front_matter(card)
    lines += [f"# {card.get('title') or 'realignkit output'}", "",
              f"Written by realignkit {card['version']} with **{method['display']}**.", ""]
    lines += ["## Parents", "", "| role | model | revision |", "|---|---|---|"]
    lines += [_parent_row(p) for p in card.get("parents", [])] + [""]
    lines += ["## Method", "", f"**{method['display']}**. {method.get('paper') or ''}".rstrip(), "",
              "Parameters:", "", "```json", json.dumps(method.get("parameters", {}), indent=2, sort_keys=True,
                                                      default=str), "```", ""]
    if card.get("audit"):
        lines += _audit_section(card["audit"])
    check = card.get("self_check") or {}
    if check.get("broken"):
        lines += ["**Warning:** realignkit's self-check flagged this output as broken (perplexity far above the "
                  "aligned parent's); see realignkit.json.", ""]
    lines += ["## Reproduce", "", "```bash", card.get("command") or "realignkit repair ...", "```", ""]
    if card.get("mergekit_config"):
        lines += [f"The same merge as a mergekit recipe: `{card['mergekit_config']}` (`mergekit-yaml "
                  f"{card['mergekit_config']} OUT`, or `realignkit repair --config {card['mergekit_config']} --out "
                  "OUT`).", ""]
    lines += ["Provenance (inputs, fingerprints, versions, timings): `realignkit.json`.", ""]
    return "\n".join(lines)
