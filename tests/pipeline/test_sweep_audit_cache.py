"""`realignkit audit OUT/winner` after a sweep is answered from the sweep's generation cache (OUT/cache): the
sweep and the audit key a model by the same weights fingerprint, so the winner, evaluated as a candidate in a
scratch dir and again as OUT/winner, is one model to the cache wherever it lies."""

import json

import pytest

from realignkit.cli import main
from realignkit.evaluation.backends import TransformersBackend
from realignkit.evaluation.cache import KeyValueCache

SUITES = ("harmful", "old_skill", "borderline")
SETTINGS = ["--limit", "6", "--max-new-tokens", "16"]


@pytest.fixture
def generated(monkeypatch):
    """Prompts the transformers backend really generated for (cache misses), in this test."""
    prompts: list[str] = []
    original = TransformersBackend._generate_uncached

    def counting(self, batch, settings, *, progress):
        prompts.extend(batch)
        return original(self, batch, settings, progress=progress)

    monkeypatch.setattr(TransformersBackend, "_generate_uncached", counting)
    return prompts


def test_audit_of_the_winner_reuses_the_sweeps_generations(sweep_lab, tmp_path, capsys, generated):
    suites = [arg for name in SUITES for arg in ("--suite", str(sweep_lab / "suites" / f"{name}.jsonl"))]
    out = tmp_path / "sweep"
    code = main(["sweep", "--aligned", str(sweep_lab / "aligned"), "--tuned", str(sweep_lab / "harmful-mix-0.1-full"),
                 "--methods", "interpolate", "--grid", "interpolate.alpha=0.3,0.7", *suites, *SETTINGS,
                 "--no-progress", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    # The sweep says how to audit its winner from its cache (the command this test runs).
    assert f"realignkit audit {out.resolve() / 'winner'} --cache-dir {out.resolve() / 'cache'}" in capsys.readouterr().out
    summary = json.loads((out / "sweep.json").read_text())
    winner = summary["winner"]
    assert winner["id"] is not None and (out / "winner" / "config.json").is_file()
    # Evaluated in a scratch dir (selection split) and as OUT/winner (test split): one fingerprint.
    row = next(c for c in summary["candidates"] if c["id"] == winner["id"])
    assert row["fingerprint"] == winner["test"]["fingerprint"]
    cache = KeyValueCache(out / "cache" / "generations.sqlite", table="generations")
    entries = len(cache)
    assert generated and entries > 0

    generated.clear()
    audit_out = tmp_path / "audit"
    code = main(["audit", str(out / "winner"), *suites, *SETTINGS, "--cache-dir", str(out / "cache"),
                 "--out", str(audit_out)])
    assert code == 0, capsys.readouterr().err
    results = json.loads((audit_out / "results.json").read_text())
    # Every item (both of the sweep's splits) came from the sweep's cache: nothing generated, nothing added.
    assert results["n_items"] == sum(summary["splits"][split][kind] for split in ("selection", "test")
                                     for kind in summary["splits"][split])
    assert generated == []
    assert len(cache) == entries
    assert results["model_fingerprint"] == winner["test"]["fingerprint"]

    # The counter does count: the same audit against an empty cache generates every item.
    code = main(["audit", str(out / "winner"), *suites, *SETTINGS, "--cache-dir", str(tmp_path / "empty-cache"),
                 "--out", str(tmp_path / "audit-uncached")])
    assert code == 0, capsys.readouterr().err
    assert len(generated) == results["n_items"]
    uncached = [json.loads(line) for line in (tmp_path / "audit-uncached" / "items.jsonl").read_text().splitlines()]
    cached = [json.loads(line) for line in (audit_out / "items.jsonl").read_text().splitlines()]
    assert [r["response"] for r in uncached] == [r["response"] for r in cached]


def test_a_wider_grid_given_the_earlier_cache_generates_only_its_new_candidate(sweep_lab, tmp_path, capsys,
                                                                              generated):
    suites = [arg for name in SUITES for arg in ("--suite", str(sweep_lab / "suites" / f"{name}.jsonl"))]
    common = ["--aligned", str(sweep_lab / "aligned"), "--tuned", str(sweep_lab / "harmful-mix-0.1-full"),
              "--methods", "interpolate", *suites, *SETTINGS, "--no-progress", "--cache-dir", str(tmp_path / "shared")]
    assert main(["sweep", *common, "--grid", "interpolate.alpha=0.3", "--out", str(tmp_path / "narrow")]) == 0
    assert not (tmp_path / "narrow" / "cache").exists() and (tmp_path / "shared" / "generations.sqlite").is_file()
    assert f"--cache-dir {tmp_path / 'shared'}" in capsys.readouterr().out
    generated.clear()
    assert main(["sweep", *common, "--grid", "interpolate.alpha=0.3,0.7", "--out", str(tmp_path / "wide")]) == 0
    rows = {c["params"]["alpha"]: c for c in json.loads((tmp_path / "wide" / "sweep.json").read_text())["candidates"]}
    assert rows[0.3]["selection"]["generated"] == 0 and rows[0.3]["selection"]["cached"] > 0
    assert rows[0.7]["selection"]["generated"] > 0
    assert generated
