"""Small calibration files in the tiny fixture vocabulary (words w0..w99); no real text of any kind."""

from __future__ import annotations

import json
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def prompt_response_rows(n: int = 6) -> list[dict]:
    """Antidote-style rows: a prompt and an answer of varying lengths (so batches need padding)."""
    return [
        {"prompt": " ".join(f"w{(3 * i + k) % 90}" for k in range(2 + i % 3)),
         "response": " ".join(f"w{(7 * i + k) % 90 + 5}" for k in range(3 + i % 4))}
        for i in range(n)
    ]  # fmt: skip


def preference_rows(n: int = 8) -> list[dict]:
    """SOMF-style rows: the same 'refusal' phrase is chosen, a varying 'compliance' phrase is rejected."""
    return [
        {
            "prompt": f"w{10 + i} w{20 + i} w{30 + i}",
            "chosen": "w50 w51 w52",
            "rejected": f"w{60 + i} w{70 + i} w61",
        }
        for i in range(n)
    ]


def assert_repair_cli_rejects(method: str, family: dict, calibration: Path, sets: list[str], message: str,
                              out: Path, capsys) -> None:  # fmt: skip
    """`realignkit repair METHOD` on bad input: exit 2, one stderr line containing `message`, nothing written."""
    from realignkit.cli import main

    args = ["repair", method, "--tuned", str(family["tuned"]), "--aligned", str(family["aligned"]),
            "--calibration", str(calibration), "--quiet", "--out", str(out)]  # fmt: skip
    for item in sets:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()
