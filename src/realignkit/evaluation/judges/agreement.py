"""How far each offline judge agrees with people: the figures `benchmarks/bench_judges.py` measured, shipped as
`data/agreement.json` so that results.json, sweep.json and the report can say how far to trust a judge's numbers.

A figure is only recorded for the judge version it was measured on. "held_out" figures come from data the
judge's fitted parts never saw (leave-one-model-out); "in_sample" figures are labelled as such.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

AGREEMENT_FILE = Path(__file__).with_name("data") / "agreement.json"


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    if not AGREEMENT_FILE.is_file():
        return {}
    return json.loads(AGREEMENT_FILE.read_text())


def measured_agreement(name: str, version: str) -> dict[str, Any] | None:
    """The recorded agreement of judge `name` at `version`, or None when nothing was measured for it."""
    entry = _table().get("judges", {}).get(name)
    if not entry or entry.get("version") != version:
        return None
    return {key: value for key, value in entry.items() if key != "version"}
