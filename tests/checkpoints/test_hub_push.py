"""`--push-to-hub REPO` against a fake hub on 127.0.0.1: the whole output arrives, the token is sent as the
Authorization header and appears nowhere else; without a token nothing is computed or written."""

import os
import subprocess
import sys

from fixtures.fake_hub import FakeHub

TOKEN = "hf_test_not_a_real_token_5bd1"
CLI = [sys.executable, "-m", "realignkit.cli"]


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="0", OMP_NUM_THREADS="1", **extra)
    return env


def test_repair_pushes_the_output_with_the_token_from_the_environment(tiny_family, tmp_path):
    with FakeHub() as hub:
        result = subprocess.run(
            [*CLI, "repair", "interpolate", "--aligned", str(tiny_family["aligned"]), "--tuned",
             str(tiny_family["tuned"]), "--set", "alpha=0.3", "--out", str(tmp_path / "out"), "--quiet",
             "--no-self-check", "--push-to-hub", "me/repaired"],
            env=_env(tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pushed" in result.stdout and "me/repaired" in result.stdout
    assert hub.created == ["me/repaired"]
    uploaded = {path: data for (repo, path), data in hub.files.items() if repo == "me/repaired"}
    local = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()}
    assert uploaded == local  # every file, byte for byte
    assert {"README.md", "mergekit_config.yml", "model.safetensors", "realignkit.json"} <= set(uploaded)
    assert f"Bearer {TOKEN}" in hub.authorizations  # the token went where it belongs ...
    written = b"".join(local.values()).decode("latin-1")
    assert TOKEN not in result.stdout + result.stderr and TOKEN not in written  # ... and nowhere else


def test_push_without_a_token_fails_before_any_work(tiny_family, tmp_path):
    result = subprocess.run(
        [*CLI, "repair", "interpolate", "--aligned", str(tiny_family["aligned"]), "--tuned", str(tiny_family["tuned"]),
         "--out", str(tmp_path / "out"), "--push-to-hub", "me/repaired"],
        env=_env(tmp_path, HF_ENDPOINT="http://127.0.0.1:9"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "needs a write token in the environment (HF_TOKEN)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    result = subprocess.run(
        [*CLI, "sweep", "--aligned", str(tiny_family["aligned"]), "--tuned", str(tiny_family["tuned"]),
         "--out", str(tmp_path / "sweep"), "--push-to-hub", "me/winner"],
        env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "HF_TOKEN" in result.stderr and not (tmp_path / "sweep").exists()


def test_a_failing_hub_is_one_line_with_the_token_masked(tiny_family, tmp_path):
    with FakeHub() as hub:
        result = subprocess.run(
            [*CLI, "repair", "interpolate", "--aligned", str(tiny_family["aligned"]), "--tuned",
             str(tiny_family["tuned"]), "--out", str(tmp_path / "out"), "--quiet", "--no-self-check",
             "--push-to-hub", "me/repaired"],
            env=_env(tmp_path, HF_ENDPOINT=hub.url + "/broken", HF_TOKEN=TOKEN), capture_output=True, text=True,
            timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--push-to-hub 'me/repaired' failed" in lines[0] and "the output is still at" in lines[0]
    assert TOKEN not in result.stderr + result.stdout
    assert (tmp_path / "out" / "model.safetensors").is_file()  # the local output is whole
