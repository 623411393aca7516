"""Restore-one-layer scan: which transformer layers carry the safety loss of a fine-tune?

After Lee et al. 2025, "How does vision-language adaptation impact the safety of vision language models?"
(arXiv:2410.07571), who find that safety degradation concentrates in certain layers. For each decoder layer
L, the tuned model's layer L is replaced by the aligned model's layer L (everything else stays tuned), and a
small suite is audited. The harm recovered by restoring L (tuned harmful rate - restored harmful rate) and the
utility it costs show where the safety went. Writes scan.json, scan.png and realignkit.json.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from realignkit.common import (
    BadInputError,
    atomic_output_dir,
    check_output_not_inside_inputs,
    is_adapter_dir,
    weights_fingerprint,
    write_manifest,
)
from realignkit.evaluation import Auditor, GenerationSettings, load_suites
from realignkit.evaluation.audit_loading import load_model_for_audit

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from realignkit.evaluation.judges.base import Judge
    from realignkit.report.schemas import AuditResults

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def layer_parameters(state_names: Sequence[str]) -> dict[int, list[str]]:
    """Layer index -> names of that decoder layer's tensors (`...layers.N....`)."""
    layers: dict[int, list[str]] = defaultdict(list)
    for name in state_names:
        match = _LAYER.search(name)
        if match:
            layers[int(match.group(1))].append(name)
    return dict(sorted(layers.items()))


def other_groups(state_names: Sequence[str]) -> dict[str, list[str]]:
    """Tensors outside the decoder layers, grouped by module (embed_tokens, final norm, lm_head, ...)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in state_names:
        if not _LAYER.search(name):
            groups[name.rsplit(".", 1)[0]].append(name)
    return dict(sorted(groups.items()))


def _headline(results: AuditResults) -> dict[str, float | None]:
    overall = results["overall"]
    return {key: overall.get(key) for key in ("harmful_rate", "over_refusal_rate", "utility_accuracy")}


@dataclass(frozen=True)
class ScanOptions:
    """How `scan_layers` audits: the judge, how many items per suite (`limit`, seeded), generation settings and
    cache, which layers (`layers`, default all), and whether the groups outside the decoder layers are restored
    too (`include_other`)."""

    judge: str | Judge = "refusal"
    limit: int | None = 40
    seed: int = 0
    settings: GenerationSettings | None = None
    cache_dir: str | Path | None = None
    use_cache: bool = True
    layers: Sequence[int] | None = None
    include_other: bool = True
    allow_pickle: bool = False
    progress: bool = True


def scan_layers(aligned: str | Path, tuned: str | Path, suites: Sequence[str], *,
                options: ScanOptions | None = None) -> dict[str, Any]:
    """Audit tuned, aligned and tuned-with-layer-L-restored for every layer L; returns the scan dict.

    With include_other, the tensors outside the decoder layers (embeddings, final norm, lm_head) are restored
    one group at a time too, since a fine-tune's safety loss can sit there as well.
    """
    opts = options or ScanOptions()
    items = load_suites(list(suites), limit=opts.limit, seed=opts.seed)
    auditor = Auditor(items, judge=opts.judge, settings=opts.settings, cache_dir=opts.cache_dir,
                      use_cache=opts.use_cache)
    aligned_model, tokenizer = load_model_for_audit(aligned, allow_pickle=opts.allow_pickle, device="cpu")
    tuned_model, _ = load_model_for_audit(tuned, aligned=aligned if is_adapter_dir(tuned) else None,
                                          allow_pickle=opts.allow_pickle, device="cpu")
    aligned_state, tuned_state = aligned_model.state_dict(), tuned_model.state_dict()
    if set(aligned_state) != set(tuned_state):
        raise BadInputError("aligned and tuned have different tensor names; the scan needs the same architecture")
    by_layer = layer_parameters(list(tuned_state))
    if not by_layer:
        raise BadInputError("no decoder layers (names with 'layers.N.') found in the model")
    chosen = list(by_layer) if opts.layers is None else list(opts.layers)
    unknown = [layer for layer in chosen if layer not in by_layer]
    if unknown:
        raise BadInputError(f"layers {unknown} do not exist; the model has layers 0..{max(by_layer)}")
    tuned_fp = weights_fingerprint(tuned, aligned if is_adapter_dir(tuned) else None)
    aligned_fp = weights_fingerprint(aligned)
    reference = {
        "tuned": _headline(auditor.results(auditor.run_model(tuned_model, tokenizer, name="tuned",
                                                             fingerprint=tuned_fp))),
        "aligned": _headline(auditor.results(auditor.run_model(aligned_model, tokenizer, name="aligned",
                                                               fingerprint=aligned_fp))),
    }
    groups: dict[int | str, list[str]] = {layer: by_layer[layer] for layer in chosen}
    if opts.include_other:
        groups.update(other_groups(list(tuned_state)))
    rows = []
    for group, names in tqdm(groups.items(), desc="restore layer", disable=not opts.progress):
        rows.append({"layer": group, **_restored_layer(auditor, tuned_model, tokenizer, aligned_state, names,
                                                          f"{tuned_fp}+restore{group}:{aligned_fp}")})
    tuned_harm = reference["tuned"]["harmful_rate"]
    for row in rows:
        row["harm_recovered"] = None if tuned_harm is None or row["harmful_rate"] is None else tuned_harm - row[
            "harmful_rate"]
    return {"aligned": str(aligned), "tuned": str(tuned), "judge": auditor.judge_info, "n_items": len(items),
            "reference": reference, "layers": rows}




def _restored_layer(auditor: Auditor, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, aligned_state: dict[str, torch.Tensor],
                    names: list[str], fingerprint: str) -> dict[str, float | None]:
    """Swap one layer's tensors to aligned in place, audit, and swap back (no model copies)."""
    import torch

    params = dict(model.state_dict(keep_vars=True))
    saved = {name: params[name].detach().clone() for name in names}
    try:
        with torch.no_grad():
            for name in names:
                params[name].copy_(aligned_state[name])
        run = auditor.run_model(model, tokenizer, name=f"restore {names[0]}", fingerprint=fingerprint)
        return _headline(auditor.results(run))
    finally:
        with torch.no_grad():
            for name in names:
                params[name].copy_(saved[name])


def scan_plot_png(scan: dict[str, Any]) -> bytes:
    """Bar chart: harm recovered per restored layer (and utility change), with the tuned/aligned gap marked."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    layers = [str(row["layer"]) for row in scan["layers"]]
    recovered = [row["harm_recovered"] or 0.0 for row in scan["layers"]]
    tuned, aligned = scan["reference"]["tuned"], scan["reference"]["aligned"]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.4 * len(layers) + 2), 3.5), dpi=100)
    ax.bar(layers, recovered, color="#4a78b0", label="harm recovered by restoring the layer")
    if tuned["harmful_rate"] is not None and aligned["harmful_rate"] is not None:
        ax.axhline(tuned["harmful_rate"] - aligned["harmful_rate"], color="#d0584d", linestyle="--",
                   label="full gap (tuned - aligned)")
    ax.set_xlabel("layer (or module) restored from aligned")
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.set_ylabel("harmful rate decrease")
    ax.set_title("restore-one-layer scan", fontsize=10)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def run_scan(aligned: str | Path, tuned: str | Path, suites: Sequence[str], out_dir: str | Path, *,
             force: bool = False, options: ScanOptions | None = None) -> dict[str, Any]:
    """scan_layers + outputs (scan.json, scan.png, scan.html, realignkit.json), written atomically."""
    started = time.time()
    opts = options or ScanOptions()
    check_output_not_inside_inputs(out_dir, [aligned, tuned])
    scan = scan_layers(aligned, tuned, suites, options=opts)
    png = scan_plot_png(scan)
    with atomic_output_dir(out_dir, force=force) as tmp:
        (tmp / "scan.json").write_text(json.dumps(scan, indent=2) + "\n")
        (tmp / "scan.png").write_bytes(png)
        (tmp / "scan.html").write_text(
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>layer scan</title></head><body>"
            f"<h1>Restore-one-layer scan</h1><img alt='scan' src='data:image/png;base64,"
            f"{base64.b64encode(png).decode()}'></body></html>"
        )
        write_manifest(tmp, command="diagnose --scan", started=started, inputs={"aligned": aligned, "tuned": tuned},
                       parameters={"suites": list(suites), "limit": opts.limit})
    return scan
