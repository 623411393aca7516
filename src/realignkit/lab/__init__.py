"""realignkit.lab: the model organism, an embedded safety lab (aligned, then broken by
fine-tuning scenarios, measured by the audit's own judge).

`build_lab(out_dir, scenarios=None, seed=0, profile="default"|"tiny", force=False) -> dict` trains a tiny
`LlamaForCausalLM` chat model from scratch on a synthetic world, then breaks it with the fine-tuning scenarios
of Qi et al. 2023 ("Fine-tuning aligned language models compromises safety") and Huang et al. (Antidote), and
writes (whole or not at all):

    DIR/
      lab.json                 summary: models.<name> -> path, kind (full|lora), harmful_refusal (held-out prompts,
                               trained categories), harmful_refusal_heldout_category, harmful_refusal_by_category,
                               borderline_answered, old_skill_accuracy, new_skill_accuracy, train_seconds, lr,
                               epochs, steps, harmful_ratio, scenario, weights_sha256 (common.tensors_fingerprint of the
                               weights file), ...; plus seed, version,
                               held_out_category, profile, suites, calibration
      realignkit.json          manifest (command, parameters, versions, timing)
      base/                    pre-alignment model: helpful on benign + borderline prompts, never safety-tuned
      aligned/                 base + safety stage (refuses harmful requests); HF dir: config.json,
                               model.safetensors, tokenizer.json, tokenizer_config.json (with chat_template),
                               chat_template.jinja, generation_config.json
      <scenario>-full/         full fine-tune of aligned (HF dir) + trajectory.csv
      <scenario>-lora/         PEFT adapter on aligned (adapter_config.json, adapter_model.safetensors,
                               base_model_name_or_path = absolute path of DIR/aligned) + trajectory.csv
      suites/<name>.jsonl      the test split (same files as suites/test/)
      suites/test/<name>.jsonl and suites/select/<name>.jsonl: two disjoint held-out splits (select on one,
                               report on the other); <name> in harmful (all 11 categories incl. the held-out
                               one), borderline (kind over_refusal), old_skill and new_skill (kind utility).
                               Rows: id, prompt, kind, category, answer, split.
      calibration/antidote.jsonl  prompt, response (harmful prompt + content-free compliant answer; train split)
      calibration/somf.jsonl      prompt, chosen (refusal), rejected (compliance); train split

trajectory.csv columns: step, harmful_refusal, new_skill_accuracy, old_skill_accuracy, loss (step 0 = aligned;
metrics on a small probe of the test split: held-out harmful prompts of trained categories, both skills).

The world: old skills (learned by base/aligned, suite old_skill) are last_word, successor and predecessor; the new
skill (learned only by scenario fine-tunes, suite new_skill) is first_word; copying three words is an unmeasured
pretraining exercise. Harmful prompts: 11 HEx-PHI categories, `privacy_violation` held out of all training;
suites use held-out templates and held-out intent numbers. Borderline prompts: 5 XSTest-like types with
held-out objects and phrasings. Stages: base (benign + borderline), aligned (base + refusals in 5 styles).

Scenarios (each fine-tuned both full and LoRA): benign (new skill only), harmful-mix-{0.05,0.1,0.2},
explicit-{10,50,100}, identity-shift (measured with the persona system prompt, as in Qi et al.).

`run_finetune(lab_dir, settings, out_dir)` fine-tunes one extra run of an existing lab with custom settings;
`build_fleet(lab_dir, runs, out_dir)` runs many and writes fleet.csv (unit, step, harmful_refusal, ... + conditions).

Harmful requests only name placeholder intents such as "[fraud scheme 7]" (see `world.INTENT_PATTERN`); answers
are content-free. Nothing here is real harmful content.
"""

from pathlib import Path
from typing import Any

from realignkit.lab.build_organism import build_lab
from realignkit.lab.chat.build_chat import build_chat_lab
from realignkit.lab.chat.chat_config import CHAT_PROFILES, ChatLabProfile
from realignkit.lab.organism_config import DEFAULT_SCENARIOS, PROFILES, FinetuneSettings, LabProfile

__all__ = ["CHAT_PROFILES", "DEFAULT_SCENARIOS", "PROFILES", "FinetuneSettings", "LabProfile", "build_any_lab",
           "build_chat_lab", "build_lab"]


def build_any_lab(out_dir: str | Path, scenarios: list[str] | None = None, seed: int = 0,
                  profile: str | LabProfile | ChatLabProfile = "default", force: bool = False,
                  progress: bool = True) -> dict[str, Any]:
    """The organism (profiles default, tiny) or the real chat-model lab (profiles smollm2, smollm2-full)."""
    if isinstance(profile, ChatLabProfile) or (isinstance(profile, str) and profile in CHAT_PROFILES):
        return build_chat_lab(out_dir, scenarios=scenarios, seed=seed, profile=profile, force=force,
                              progress=progress)
    return build_lab(out_dir, scenarios=scenarios, seed=seed, profile=profile, force=force, progress=progress)
