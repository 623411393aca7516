"""The README's "Python API" examples run as written (on the reduced organism standing in for `make demo`'s lab)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_api_examples_run(tiny_organism, tmp_path, monkeypatch, capsys):
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    (tmp_path / "demo_out").mkdir()
    (tmp_path / "demo_out" / "lab").symlink_to(tiny_organism)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REALIGNKIT_CACHE_DIR", str(tmp_path / "cache"))
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 (our own README's examples)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3
    repaired = tmp_path / "runs" / "api-repair"
    assert namespace["result"].out == Path("runs/api-repair") and (repaired / "mergekit_config.yml").is_file()
    assert "## Parents" in (repaired / "README.md").read_text()
    results = namespace["results"]
    assert results["baseline"] and (tmp_path / "runs" / "api-audit" / "results.json").is_file()
    assert 0.0 <= results["overall"]["harmful_rate"] <= 1.0
    summary = namespace["summary"]
    assert summary["winner"]["method"] == "interpolate" and len(summary["candidates"]) == 2
    assert "## Safety audit" in (tmp_path / "runs" / "api-sweep" / "winner" / "README.md").read_text()
