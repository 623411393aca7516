"""Streaming safetensors reader/writer, shard index handling, name maps and the pickle policy."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from realignkit.checkpoints import (
    ModelDirSource,
    PlannedTensor,
    StreamingModelWriter,
    canonical_name,
    layer_index,
    module_matches,
    open_source,
    parse_size,
)
from realignkit.checkpoints.safetensors_io import read_header
from realignkit.common import BadInputError


def _mixed_tensors():
    gen = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(5, 7, generator=gen).to(torch.bfloat16),
        "b.weight": torch.randn(3, generator=gen).to(torch.float16),
        "c.weight": torch.randn(4, 4, generator=gen),
        "d.ids": torch.arange(6, dtype=torch.int64),
        "e.mask": torch.tensor([True, False, True]),
        "f.empty": torch.zeros(0, 3),
    }


def test_streaming_writer_round_trip_with_shards(tmp_path):
    tensors = _mixed_tensors()
    planned = [PlannedTensor(n, tuple(t.shape), t.dtype) for n, t in tensors.items()]
    writer = StreamingModelWriter(tmp_path, planned, max_shard_bytes=80)
    for name, tensor in tensors.items():
        writer.write(name, tensor)
    files = writer.finish()
    assert len(files) > 1 and all((tmp_path / f).is_file() for f in files)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors)
    loaded = {}
    for f in files:  # the reference safetensors library reads what we wrote
        loaded.update(load_file(str(tmp_path / f)))
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)
    source = ModelDirSource(tmp_path, role="tuned")
    for name, tensor in tensors.items():
        assert torch.equal(source.get(name), tensor)
    source.close()


def test_writer_refuses_out_of_order(tmp_path):
    planned = [PlannedTensor("x", (2,), torch.float32), PlannedTensor("y", (2,), torch.float32)]
    writer = StreamingModelWriter(tmp_path, planned)
    with pytest.raises(RuntimeError):
        writer.write("y", torch.zeros(2))


def test_reader_matches_reference_on_sharded_model(tiny_llama_sharded_dir, tiny_family):
    source = open_source(tiny_llama_sharded_dir, role="tuned")
    assert len(source.files()) == 3
    reference = load_file(str(tiny_family["tuned"] / "model.safetensors"))
    assert sorted(source.names()) == sorted(reference)
    for name, tensor in reference.items():
        assert torch.equal(source.get(name), tensor)
        assert source.shape(name) == tuple(tensor.shape) and source.dtype(name) == tensor.dtype


def test_truncated_shard_is_detected(tmp_path, tiny_family):
    path = tmp_path / "m.safetensors"
    shutil.copy(tiny_family["tuned"] / "model.safetensors", path)
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size - 100)
    with pytest.raises(BadInputError, match="truncated"):
        read_header(path)
    path.write_bytes(b"\x01\x02")
    with pytest.raises(BadInputError, match="truncated"):
        read_header(path)


def test_index_naming_missing_file(tmp_path, tiny_llama_sharded_dir):
    copy = tmp_path / "m"
    shutil.copytree(tiny_llama_sharded_dir, copy)
    (copy / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(BadInputError, match="missing shard file"):
        open_source(copy, role="tuned")


def test_pickle_only_needs_opt_in(tmp_path, tiny_family):
    state = load_file(str(tiny_family["tuned"] / "model.safetensors"))
    (tmp_path / "m").mkdir()
    torch.save(state, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(BadInputError, match="--allow-pickle"):
        open_source(tmp_path / "m", role="tuned")
    source = open_source(tmp_path / "m", role="tuned", allow_pickle=True)
    for name, tensor in state.items():
        assert torch.equal(source.get(name), tensor)


def test_pickle_with_code_is_refused_even_when_allowed(tmp_path):
    import argparse

    (tmp_path / "m").mkdir()  # an arbitrary object: weights_only loading must refuse it
    torch.save({"x": torch.zeros(2), "obj": argparse.Namespace(a=1)}, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(BadInputError, match="cannot load pickle"):
        open_source(tmp_path / "m", role="tuned", allow_pickle=True)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("language_model.model.layers.3.mlp.up_proj.weight", "model.layers.3.mlp.up_proj.weight"),
        ("model.language_model.layers.3.mlp.up_proj.weight", "model.layers.3.mlp.up_proj.weight"),
        ("language_model.lm_head.weight", "lm_head.weight"),
        ("model.language_model.embed_tokens.weight", "model.embed_tokens.weight"),
        ("base_model.model.model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.weight"),
        ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.weight"),
        ("vision_tower.blocks.0.weight", "vision_tower.blocks.0.weight"),
    ],
)
def test_canonical_names(name, expected):
    assert canonical_name(name) == expected


def test_module_matching_and_layer_index():
    assert module_matches("model.layers.0.self_attn.q_proj", ["q_proj"])
    assert module_matches("model.layers.0.self_attn.q_proj", ["self_attn.*"])
    assert not module_matches("model.layers.0.self_attn.q_proj", ["v_proj"])
    assert module_matches("model.layers.0.self_attn.q_proj", r".*\.(q|k)_proj")
    assert layer_index("language_model.model.layers.12.mlp.up_proj.weight") == 12
    assert layer_index("model.embed_tokens.weight") is None


def test_parse_size():
    assert parse_size("2GB") == 2_000_000_000 and parse_size("64KiB") == 65536 and parse_size("123") == 123
    with pytest.raises(ValueError):
        parse_size("lots")


def test_only_safetensors_and_config_are_needed(tmp_path):
    save_file({"w": torch.ones(2)}, str(tmp_path / "model.safetensors"))
    assert open_source(tmp_path, role="aligned").names() == ["w"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no model weights"):
        open_source(tmp_path / "empty", role="aligned")
    with pytest.raises(BadInputError, match="does not exist"):
        open_source(tmp_path / "absent", role="aligned")
