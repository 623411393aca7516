"""`--device`: where the merge math runs. No GPU here, so the plumbing is tested on the CPU: every computed row
passes through the engine's one device move and comes back to the CPU for writing; each per-tensor function keeps
its work on its inputs' device (checked with torch's `meta` device, which refuses to mix with CPU tensors, so a
CPU-made mask or CPU-held state would fail exactly as it would next to CUDA tensors); a missing GPU is one line."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from realignkit.cli import main
from realignkit.common import BadInputError
from realignkit.methods import inputs as engine_inputs
from realignkit.methods.engine import RepairOptions, run_repair
from realignkit.methods.inputs import resolve_device
from realignkit.methods.registry import get_method

META = torch.device("meta")


def _state(path):
    state = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(file)))
    return state


@pytest.mark.parametrize("method,params", [("ties", {"density": 0.3}), ("dare", {"density": 0.5, "scale": 0.5}),
                                           ("safe_lora", {"threshold": 0.5})])
def test_every_computed_row_goes_through_the_device_move(tiny_family, tmp_path, monkeypatch, method, params):
    moved = []
    real = engine_inputs.to_device

    def spy(bundle, device):
        moved.append((tuple(bundle.aligned.shape), device))
        return real(bundle, device)

    monkeypatch.setattr(engine_inputs, "to_device", spy)
    inputs = dict(aligned=tiny_family["aligned"], tuned=[tiny_family["tuned"]], unaligned=tiny_family["base"])
    run_repair(method, params, **inputs, out=tmp_path / "dev",
               options=RepairOptions(show_progress=False, self_check=False, device="cpu", block_elements=100))
    assert moved and {device for _, device in moved} == {torch.device("cpu")}
    computed = [name for name in _state(tiny_family["aligned"]) if name.endswith("weight")]
    assert len(moved) >= len(computed)  # every row (and, for TIES' statistics, its blocks) was moved
    monkeypatch.setattr(engine_inputs, "to_device", real)
    run_repair(method, params, **inputs, out=tmp_path / "plain",
               options=RepairOptions(show_progress=False, self_check=False, block_elements=100))
    got, want = _state(tmp_path / "dev"), _state(tmp_path / "plain")
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0)


def test_to_device_is_a_no_op_on_the_cpu_and_moves_every_tensor_elsewhere():
    from realignkit.methods.context import TensorBundle

    bundle = TensorBundle(aligned=torch.ones(2, 3), tuned=[torch.zeros(2, 3), torch.ones(2, 3)], unaligned=torch.ones(2, 3))
    assert engine_inputs.to_device(bundle, torch.device("cpu")) is bundle
    moved = engine_inputs.to_device(bundle, META)
    assert {t.device for t in [moved.aligned, *moved.tuned, moved.unaligned]} == {META}


@pytest.mark.parametrize("method,params", [
    ("interpolate", {"alpha": 0.3}), ("task_arithmetic", {"scale": 0.5}),
    ("dare", {"density": 0.4, "scale": 0.5}), ("resta", {"beta": 0.5}),
    ("dare_linear", {"density": 0.4, "rescale": False}), ("linear", {}),
])
def test_elementwise_functions_stay_on_their_inputs_device(method, params):
    spec = get_method(method)
    aligned, tuned, unaligned = (torch.empty(6, 4, device=META) for _ in range(3))
    result = spec.fn(aligned, [tuned], spec.parse_params(params), unaligned=unaligned, name="w", state=None)
    assert result.device == META and result.shape == (6, 4)


def test_ties_block_merge_with_cpu_statistics_stays_on_the_device():
    from realignkit.methods._topk import TopK
    from realignkit.methods.ties import ties

    spec = get_method("ties")
    top = TopK(threshold=0.5, equal_per_block=(0,), keep_equal_per_block=(0,))  # what the CPU statistics give
    aligned, tuned = torch.empty(24, device=META), [torch.empty(24, device=META) for _ in range(2)]
    merged = ties(aligned, tuned, spec.parse_params({"density": 0.5}), stats=([top, top], 0))
    assert merged.device == META and merged.shape == (24,)


def test_antidote_and_somf_move_their_cpu_state_to_the_tensor():
    from realignkit.methods.antidote import AntidoteState, _TensorAction, antidote
    from realignkit.methods.somf import SomfState, somf

    params = get_method("antidote").parse_params({"alpha": 0.25})
    aligned, tuned = torch.empty(3, 8, device=META), torch.empty(3, 8, device=META)
    for kind in ("full", "full_delta"):
        action = _TensorAction(kind, norm=torch.rand(8), protected=torch.tensor([1]), benign=torch.rand(8))
        result = antidote(aligned, [tuned], params, name="w", state=AntidoteState(actions={"w": action}))
        assert result.device == META and result.shape == (3, 8)
    lora = _TensorAction("lora_adapter", delta=torch.rand(3, 8))
    assert antidote(aligned, [tuned], params, name="w", state=AntidoteState(actions={"w": lora})).device == META
    state = SomfState(deltas={"w": torch.rand(3, 8)})
    assert somf(aligned, [tuned], get_method("somf").parse_params({}), name="w", state=state).device == META


def test_a_missing_gpu_or_a_bad_device_name_is_one_line(tiny_family, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BadInputError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(BadInputError, match="not a device name"):
        resolve_device("gpu0")
    assert resolve_device("auto") == torch.device("cpu")
    code = main(["repair", "interpolate", "--aligned", str(tiny_family["aligned"]), "--tuned", str(tiny_family["tuned"]),
                 "--set", "alpha=0.5", "--device", "cuda", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "no CUDA GPU" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
