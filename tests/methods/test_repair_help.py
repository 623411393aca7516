"""Per-method help: `realignkit repair METHOD --help` prints the method's paper, parameters and calibration format."""

import pytest

from realignkit.cli import main
from realignkit.methods.registry import get_method, method_names


def _help(capsys, *argv):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["repair", *argv])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def test_antidote_help_shows_its_parameters_paper_and_calibration_format(capsys):
    code, out, _ = _help(capsys, "antidote", "--help")
    assert code in (0, None)
    assert out.startswith("usage: realignkit repair antidote --tuned PATH --aligned PATH --calibration FILE")
    assert "Huang" in out and "Massive activations" in out  # the paper and the guard's reference
    for name in get_method("antidote").params.model_fields:
        assert f"\n  {name} " in out, name
    assert "never prune input features whose calibration norm exceeds" in out  # from the Field description
    assert "(float; default 0.1; > 0, < 1)" in out
    calibration = [line for line in out.splitlines() if line.startswith("calibration file (--calibration):")]
    assert len(calibration) == 1 and '{"prompt": ..., "response": ...}' in calibration[0]
    assert "COMPLIANT" in out.split("calibration file (--calibration):")[1].split("\n\n")[0]
    assert "--no-self-check" not in out  # the generic options stay in `repair --help`


def test_somf_help_shows_the_preference_format(capsys):
    code, out, _ = _help(capsys, "somf", "-h")
    assert code in (0, None)
    flat = " ".join(out.split())
    assert '"chosen": ..., "rejected": ...' in flat and "chosen = a refusal" in flat
    assert "\n  steps " in out and "\n  merge " in out and "task_arithmetic|ties|dare" in out


@pytest.mark.parametrize("method", ["interpolate", "ties", "resta", "safe_lora"])
def test_every_method_has_its_own_help(capsys, method):
    code, out, _ = _help(capsys, method, "--help")
    assert code in (0, None)
    assert out.startswith(f"usage: realignkit repair {method} ")
    assert "calibration file (--calibration)" not in out
    for name in get_method(method).params.model_fields:
        assert f"\n  {name} " in out, name


def test_all_registered_methods_render(capsys):
    for method in method_names():
        code, out, _ = _help(capsys, method, "--help")
        assert code in (0, None) and "parameters (--set KEY=VALUE):" in out


def test_generic_help_still_works_and_lists_the_calibration_formats(capsys):
    code, out, _ = _help(capsys, "--help")
    assert code in (0, None)
    assert "usage: realignkit repair" in out and "--set KEY=VALUE" in out and "--no-self-check" in out
    formats = " ".join(out.split("calibration file formats (--calibration):")[1].split())  # unwrap
    assert (
        "antidote" in formats
        and "COMPLIANT" in formats
        and "somf" in formats
        and "chosen = a refusal" in formats
    )
    assert "realignkit repair METHOD --help" in out


def test_help_for_an_unknown_method_exits_2(capsys):
    code, _, err = _help(capsys, "antidot", "--help")
    assert code == 2 and "unknown method 'antidot'" in err and "did you mean 'antidote'" in err
