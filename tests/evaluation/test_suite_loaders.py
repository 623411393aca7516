"""Suite loaders: formats, bad input naming the line, stratified sampling, and the real benchmark files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from realignkit.common import BadInputError
from realignkit.evaluation.suite_files import HEX_PHI_CATEGORIES, load_suite_spec, load_suites
from realignkit.evaluation.suite_items import SuiteItem, stratified_sample

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
needs_datasets = pytest.mark.skipif(not DATASETS.is_dir(), reason="../shared/datasets is absent")


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_generic_jsonl(tmp_path):
    path = _write_jsonl(tmp_path / "mine.jsonl", [
        {"id": "a", "prompt": "a request to [intent-1]", "kind": "harmful", "category": "fraud"},
        {"prompt": "how do I kill a python process", "kind": "over_refusal"},
        {"id": "c", "prompt": "2+2?", "kind": "utility", "answer": 4, "meta": {"family": "math"}},
    ])
    items = load_suite_spec(str(path))
    assert [i.id for i in items] == ["a", "2", "c"]
    assert [i.kind for i in items] == ["harmful", "over_refusal", "utility"]
    assert items[1].category == "uncategorized" and items[2].answer == "4"
    assert {i.suite for i in items} == {"mine"}
    assert items[2].meta == {"family": "math"}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "x", "kind": "harmful"}', "{not json"], r"line 2: not valid JSON"),
        (['{"prompt": "x", "kind": "harmful", "categry": "a"}'], r"line 1: unknown field 'categry' \(did you mean 'category'\?\)"),
        (['{"prompt": "", "kind": "harmful"}'], r"line 1: 'prompt' must be a non-empty string"),
        (['{"prompt": "x", "kind": "harmless"}'], r"line 1: 'kind' must be one of"),
        (['{"prompt": "x", "kind": "utility"}'], r"line 1: utility items need an 'answer'"),
        (['["x"]'], r"line 1: expected a JSON object"),
        (["", "   "], r"is empty"),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError, match=message):
        load_suite_spec(str(path))


def test_harmbench_csv_with_context(tmp_path):
    path = tmp_path / "hb.csv"
    path.write_text(
        "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"
        "a request to [intent-1],standard,cybercrime,,,b1\n"
        'a request to [intent-2],contextual,misinformation,,"some context\nover two lines",b2\n'
        ",standard,cybercrime,,,b3\n"
    )
    with pytest.raises(BadInputError, match=r"hb.csv line 5: empty Behavior"):
        load_suite_spec(str(path))
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    items = load_suite_spec(str(path))
    assert [i.id for i in items] == ["b1", "b2"]
    assert items[1].prompt == "some context\nover two lines\n\n---\n\na request to [intent-2]"
    assert items[1].category == "misinformation" and items[1].meta == {"functional_category": "contextual"}


def test_advbench_without_and_with_header(tmp_path):
    path = tmp_path / "adv.csv"
    path.write_text("a request to [intent-1]\na request to [intent-2]\n")
    assert [i.prompt for i in load_suite_spec(f"advbench:{path}")] == ["a request to [intent-1]",
                                                                      "a request to [intent-2]"]
    path.write_text("goal,target\na request to [intent-1],Sure\n")
    items = load_suite_spec(str(path))
    assert len(items) == 1 and items[0].id == "2" and items[0].kind == "harmful"


def test_xstest_labels_map_to_kinds(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,prompt,type,label,focus,note\n1,how to kill a process,homonyms,safe,,\n"
                    "2,a request to [intent-1],contrast_homonyms,unsafe,,\n3,p,t,maybe,,\n")
    with pytest.raises(BadInputError, match=r"x.csv line 4: label must be 'safe' or 'unsafe'"):
        load_suite_spec(str(path))


def test_hex_phi_folder_categories_from_file_names(tmp_path):
    folder = tmp_path / "hexphi"
    folder.mkdir()
    (folder / "category_1.csv").write_text("a request to [intent-1]\na request to [intent-2]\n")
    (folder / "category_11.csv").write_text("a request to [intent-3]\n")
    (folder / "my_custom.csv").write_text("a request to [intent-4]\n")
    items = load_suite_spec(str(folder))
    assert Counter(i.category for i in items) == {HEX_PHI_CATEGORIES[0]: 2, HEX_PHI_CATEGORIES[10]: 1, "my_custom": 1}
    assert {i.suite for i in items} == {"hex-phi"} and {i.kind for i in items} == {"harmful"}
    (folder / "category_2.csv").write_text("")
    with pytest.raises(BadInputError, match="category_2.csv' is empty"):
        load_suite_spec(f"hex-phi:{folder}")


def test_organism_lab_dir(tmp_path):
    (tmp_path / "lab" / "suites").mkdir(parents=True)
    _write_jsonl(tmp_path / "lab" / "suites" / "harmful.jsonl",
                 [{"id": "1", "prompt": "a request to [intent-1]", "kind": "harmful", "category": "malware"}])
    _write_jsonl(tmp_path / "lab" / "suites" / "skills.jsonl",
                 [{"id": "1", "prompt": "w1 plus w2", "kind": "utility", "answer": "w3", "split": "test"}])
    for spec in (str(tmp_path / "lab"), f"organism:{tmp_path / 'lab'}"):
        items = load_suite_spec(spec)
        assert [(i.suite, i.kind) for i in items] == [("harmful", "harmful"), ("skills", "utility")]
        assert items[1].meta == {"split": "test"}
    with pytest.raises(BadInputError, match="no suites/\\*.jsonl"):
        load_suite_spec(f"organism:{tmp_path}")


def test_missing_and_unknown_suites(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        load_suites([str(tmp_path / "nope.jsonl")])
    (tmp_path / "s.txt").write_text("x\n")
    with pytest.raises(BadInputError, match="cannot tell the format"):
        load_suites([str(tmp_path / "s.txt")])
    with pytest.raises(BadInputError, match="no suite given"):
        load_suites([])


def test_duplicate_ids_are_refused(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"id": "1", "prompt": "x", "kind": "harmful"}] * 2)
    with pytest.raises(BadInputError, match="duplicate item id '1'"):
        load_suites([str(path)])


def _items(counts: dict[str, int], suite: str = "s") -> list[SuiteItem]:
    return [SuiteItem(id=f"{c}{i}", prompt="p", kind="harmful", category=c, suite=suite)
            for c, n in counts.items() for i in range(n)]


def test_stratified_sample_keeps_proportions_and_every_category():
    items = _items({"big": 60, "mid": 30, "small": 2}) + _items({"x": 5}, suite="other")
    sample = stratified_sample(items, 20, seed=1)
    per_suite = Counter(i.suite for i in sample)
    assert per_suite == {"s": 20, "other": 5}
    counts = Counter(i.category for i in sample if i.suite == "s")
    assert counts["small"] >= 1 and counts["big"] > counts["mid"] > counts["small"]
    assert sum(counts.values()) == 20
    assert stratified_sample(items, 20, seed=1) == sample  # seeded
    assert stratified_sample(items, 20, seed=2) != sample
    assert [items.index(i) for i in sample] == sorted(items.index(i) for i in sample)  # original order kept
    with pytest.raises(BadInputError, match="--limit"):
        stratified_sample(items, 0)


def test_limit_below_category_count_takes_largest_categories():
    sample = stratified_sample(_items({"a": 5, "b": 9, "c": 1}), 2)
    assert Counter(i.category for i in sample) == {"b": 1, "a": 1}


@needs_datasets
def test_real_benchmark_files_load():
    harmbench = load_suite_spec(str(DATASETS / "harmbench" / "harmbench_behaviors_text_all.csv"))
    advbench = load_suite_spec(str(DATASETS / "advbench" / "harmful_behaviors.csv"))
    xstest = load_suite_spec(str(DATASETS / "xstest" / "xstest_prompts.csv"))
    assert len(harmbench) == 400 and len({i.id for i in harmbench}) == 400
    assert len({i.category for i in harmbench}) == 7
    assert len(advbench) == 520
    assert Counter(i.kind for i in xstest) == {"over_refusal": 250, "harmful": 200}
    limited = load_suites([str(DATASETS / "xstest" / "xstest_prompts.csv")], limit=45)
    assert len(limited) == 45 and len({i.category for i in limited}) >= 15
