"""The one weights fingerprint (common.fingerprint): equal weights in any directory share it; any change to the
tensors, a config that changes the answers, or an adapter's base changes it."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from realignkit.common import BadInputError, state_dict_fingerprint, tensors_fingerprint, weights_fingerprint
from realignkit.common import fingerprint as fingerprint_module


def test_a_copy_with_other_provenance_files_shares_the_fingerprint(tiny_family, tmp_path):
    original = tiny_family["tuned"]
    copy = tmp_path / "elsewhere" / "winner"
    shutil.copytree(original, copy)
    (copy / "realignkit.json").write_text('{"created": "now"}')
    (copy / "README.md").write_text("a copy\n")
    (copy / "training_args.bin").write_bytes(b"pickled trainer arguments naming " + str(copy).encode())
    assert weights_fingerprint(copy) == weights_fingerprint(original)
    assert weights_fingerprint(copy).startswith("weights:")
    assert weights_fingerprint(original) != weights_fingerprint(tiny_family["tuned2"])


def test_shards_tensor_order_and_metadata_do_not_count(tiny_family, tiny_llama_sharded_dir, tmp_path):
    tuned = tiny_family["tuned"]
    assert tensors_fingerprint(sorted(tiny_llama_sharded_dir.glob("*.safetensors"))) == tensors_fingerprint(
        [tuned / "model.safetensors"])
    tensors = load_file(str(tuned / "model.safetensors"))
    reordered = tmp_path / "reordered.safetensors"
    save_file(dict(reversed(list(tensors.items()))), str(reordered), metadata={"note": "other metadata"})
    assert tensors_fingerprint([reordered]) == tensors_fingerprint([tuned / "model.safetensors"])
    # ...and an in-memory state dict with exactly these tensors hashes the same way.
    assert state_dict_fingerprint(tensors) == tensors_fingerprint([reordered])


def test_any_weight_or_answer_changing_config_changes_it(tiny_family, tmp_path):
    original = tiny_family["aligned"]
    before = weights_fingerprint(original)
    edited = tmp_path / "edited"
    shutil.copytree(original, edited)
    tensors = load_file(str(edited / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1e-3
    save_file(tensors, str(edited / "model.safetensors"), metadata={"format": "pt"})
    assert weights_fingerprint(edited) != before
    as_bf16 = tmp_path / "bf16"
    shutil.copytree(original, as_bf16)
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(str(original / "model.safetensors")).items()},
              str(as_bf16 / "model.safetensors"))
    assert weights_fingerprint(as_bf16) != before
    config = tmp_path / "config"
    shutil.copytree(original, config)
    settings = json.loads((config / "config.json").read_text())
    settings["rms_norm_eps"] = settings.get("rms_norm_eps", 1e-6) * 10
    (config / "config.json").write_text(json.dumps(settings))
    assert weights_fingerprint(config) != before
    volatile = tmp_path / "volatile"
    shutil.copytree(original, volatile)
    settings = json.loads((volatile / "config.json").read_text())
    settings.update(transformers_version="0.0.0", _name_or_path=str(volatile))
    (volatile / "config.json").write_text(json.dumps(settings, indent=4))
    assert weights_fingerprint(volatile) == before


def test_an_adapter_covers_its_config_and_its_base(tiny_family, tiny_lora_dir, tmp_path):
    aligned = tiny_family["aligned"]
    own = weights_fingerprint(tiny_lora_dir, aligned)
    assert weights_fingerprint(tiny_lora_dir) == own  # base_model_name_or_path names the same aligned
    copy_of_base = tmp_path / "aligned-copy"
    shutil.copytree(aligned, copy_of_base)
    assert weights_fingerprint(tiny_lora_dir, copy_of_base) == own
    assert weights_fingerprint(tiny_lora_dir, tiny_family["base"]) != own
    scaled = tmp_path / "scaled"
    shutil.copytree(tiny_lora_dir, scaled)
    adapter = json.loads((scaled / "adapter_config.json").read_text())
    adapter["lora_alpha"] = adapter["lora_alpha"] * 2
    (scaled / "adapter_config.json").write_text(json.dumps(adapter))
    assert weights_fingerprint(scaled, aligned) != own
    adapter["lora_alpha"] //= 2
    adapter["target_modules"] = list(reversed(adapter["target_modules"]))  # peft saves a set: order is noise
    adapter["base_model_name_or_path"] = "/nowhere"
    (scaled / "adapter_config.json").write_text(json.dumps(adapter))
    assert weights_fingerprint(scaled, aligned) == own
    with pytest.raises(BadInputError, match="not a local dir; pass --aligned"):
        weights_fingerprint(scaled)


def test_refusals_and_the_in_process_cache(tiny_family, tmp_path):
    with pytest.raises(BadInputError, match="is not a directory"):
        weights_fingerprint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no model weights"):
        weights_fingerprint(tmp_path / "empty")
    model = tmp_path / "model"
    shutil.copytree(tiny_family["base"], model)
    first = weights_fingerprint(model)
    hits = fingerprint_module._safetensors_digests.cache_info().hits
    assert weights_fingerprint(model) == first
    assert fingerprint_module._safetensors_digests.cache_info().hits == hits + 1  # not read again
    # Rewritten in place (new size/mtime): read again, so an edited file is never served a stale digest.
    shutil.copyfile(tiny_family["tuned"] / "model.safetensors", model / "model.safetensors")
    assert weights_fingerprint(model) != first
