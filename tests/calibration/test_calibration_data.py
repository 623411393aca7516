import json

import pytest

from calibration.helpers import preference_rows, prompt_response_rows, write_jsonl
from realignkit.calibration import load_preference_jsonl, load_prompt_response_jsonl
from realignkit.calibration.calibration_files import as_prompt_responses
from realignkit.common.errors import BadInputError


def test_prompt_response_roundtrip(tmp_path):
    rows = prompt_response_rows(3)
    loaded = load_prompt_response_jsonl(write_jsonl(tmp_path / "c.jsonl", rows))
    assert [(e.prompt, e.response) for e in loaded] == [(r["prompt"], r["response"]) for r in rows]


def test_preference_roundtrip_and_view(tmp_path):
    rows = preference_rows(2)
    pairs = load_preference_jsonl(write_jsonl(tmp_path / "p.jsonl", rows))
    assert pairs[1].rejected == rows[1]["rejected"]
    assert [e.response for e in as_prompt_responses(pairs, "chosen")] == [r["chosen"] for r in rows]


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        load_prompt_response_jsonl(tmp_path / "nope.jsonl")


def test_empty_file(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n  \n")
    with pytest.raises(BadInputError, match="is empty"):
        load_prompt_response_jsonl(tmp_path / "e.jsonl")


def test_malformed_line_is_named(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n{not json\n")
    with pytest.raises(BadInputError, match=r"m\.jsonl line 2: not valid JSON"):
        load_prompt_response_jsonl(path)


def test_non_object_line(tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", [[1, 2]])
    with pytest.raises(BadInputError, match=" line 1: expected a JSON object"):
        load_prompt_response_jsonl(path)


def test_missing_and_empty_fields(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"prompt": "a", "response": "b"}, {"prompt": "a"}])
    with pytest.raises(BadInputError, match=" line 2: missing field 'response'"):
        load_prompt_response_jsonl(path)
    path = write_jsonl(tmp_path / "g.jsonl", [{"prompt": "", "response": "b"}])
    with pytest.raises(BadInputError, match="'prompt' must be a non-empty string"):
        load_prompt_response_jsonl(path)


def test_preference_without_chosen_rejected(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "response": "b"}])
    with pytest.raises(BadInputError, match="needs 'chosen' and 'rejected'.*'chosen', 'rejected'"):
        load_preference_jsonl(path)
