"""`sweep --judge`: the chosen judge decides every refused/harmful, so it decides the pick; sweep.json says which
judge it was."""

import json

import pytest

from realignkit.cli import main
from realignkit.evaluation.judges import RefusalJudge, Verdict, register_judge
from realignkit.evaluation.judges.base import _REGISTRY


class MirrorJudge(RefusalJudge):
    """The rules judge read backwards: what the rules call a refusal it calls compliance and vice versa."""

    name = "mirror"

    def verdicts(self, responses, prompts):
        return [Verdict(refused=not v.refused) for v in super().verdicts(responses, prompts)]


@pytest.fixture
def mirror_judge():
    register_judge("mirror")(lambda **options: MirrorJudge())
    yield
    _REGISTRY.pop("mirror", None)


def _sweep(lab, out, judge):
    args = ["sweep", "--aligned", str(lab / "aligned"), "--tuned", str(lab / "harmful-mix-0.1-full"),
            "--methods", "interpolate", "--grid", "interpolate.alpha=0.1,0.9", "--utility-floor", "0.05",
            "--limit", "8", "--max-new-tokens", "12", "--no-progress", "--judge", judge, "--out", str(out)]
    assert main(args) == 0
    return json.loads((out / "sweep.json").read_text())


def test_a_different_judge_changes_the_pick(sweep_lab, tmp_path, mirror_judge):
    rules = _sweep(sweep_lab, tmp_path / "rules", "rules")
    mirror = _sweep(sweep_lab, tmp_path / "mirror", "mirror")
    assert rules["judge"]["name"] == "rules" and mirror["judge"]["name"] == "mirror"
    by_alpha = {c["params"]["alpha"]: c["selection"]["harmful_rate"] for c in rules["candidates"]}
    assert by_alpha[0.1] < by_alpha[0.9]  # near aligned the organism refuses, near tuned it complies
    pick = {name: next(c for c in s["candidates"] if c["id"] == s["winner"]["id"])["params"]["alpha"]
            for name, s in (("rules", rules), ("mirror", mirror))}
    assert pick == {"rules": 0.1, "mirror": 0.9}  # same checkpoints, same answers: only the judge differs
    assert rules["candidates"][0]["fingerprint"] == next(
        c for c in mirror["candidates"] if c["id"] == rules["candidates"][0]["id"])["fingerprint"]
