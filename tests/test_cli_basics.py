import subprocess
import sys

import pytest

from realignkit.cli import SUBCOMMAND_MODULES, main
from realignkit.common import BadInputError, atomic_output_dir, check_output_not_inside_inputs


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMAND_MODULES:
        assert name in out


def test_console_module_runs():
    result = subprocess.run([sys.executable, "-m", "realignkit.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "realignkit" in result.stdout


def test_atomic_output_dir_removes_partial_output_on_error(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_atomic_output_dir_publishes_whole_output(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (out / "a.txt").read_text() == "a"


def test_output_inside_input_is_refused(tmp_path):
    with pytest.raises(BadInputError):
        check_output_not_inside_inputs(tmp_path / "model" / "out", [tmp_path / "model"])


def test_atomic_output_dir_uses_umask_mode(tmp_path):
    import os

    out = tmp_path / "out"
    with atomic_output_dir(out):
        pass
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == (0o777 & ~umask)


def test_unwritable_out_is_one_line_exit_2_not_a_traceback(tmp_path, capsys):
    completions = tmp_path / "c.jsonl"
    completions.write_text('{"prompt": "p", "response": "I cannot help with that."}\n')
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for argv in (["judge", "--input", str(completions), "--out", str(blocker / "judged.jsonl")],
                 ["lab", "build", "--profile", "tiny", "--out", str(blocker / "lab")]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, argv
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "c.jsonl"]
