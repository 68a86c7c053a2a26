"""What a later stage hashes holds no wall-clock time and no path of the run: a forced rerun that
makes the same weights, in the run or in a copy of it, writes the same bytes and stops the cascade."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

from stage1.io.lineage import Lineage, portable_path, portable_paths_in_files


def test_paths_inside_a_run_are_recorded_relative_and_outside_it_absolute(tmp_path):
    run = tmp_path / "runs" / "tiny"
    assert portable_path(run / "model", run / "merged") == "../model"
    assert portable_path(run / "merged", run / "dpo" / "adapter") == "../../merged"
    assert portable_path("/models/qwen2.5-32b", run / "merged") == "/models/qwen2.5-32b"


def _merged_lineage(run: Path) -> str:
    from stage1.train.merge import merged_model_lineage
    from stage1.train.settings import TrainingSettings

    adapter = Lineage(kind="sft_adapter", parent_path="../../model", parent_hash="p" * 64, quantization="none", dtype="float32",
                      eos_token="<|endoftext|>", eos_token_id=151643, trained_modules=("q_proj",))
    lineage = merged_model_lineage(adapter, TrainingSettings(), model_dir=run / "model", adapter_dir=run / "sft" / "adapter",
                                   out=run / "merged", eos=SimpleNamespace(token="<|endoftext|>", token_id=151643),
                                   facts={"merge_mode": "16bit", "seconds": 12.3, "fidelity": None})
    return json.dumps(lineage.to_dict(), sort_keys=True)


def test_the_merged_lineage_is_the_same_bytes_in_a_copied_run_and_holds_no_time(tmp_path):
    """lineage.json recorded the merge's wall-clock seconds and the run's absolute paths: a
    byte-identical `--force merge` reran DPO and evaluation, and so did one in a copied run."""
    run = tmp_path / "run"
    for name, data in (("model/model.safetensors", b"base"), ("sft/adapter/adapter_model.safetensors", b"lora"),
                       ("merged/model.safetensors", b"merged")):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(data)
    copy = tmp_path / "elsewhere" / "copied-run"
    shutil.copytree(run, copy)
    text = _merged_lineage(run)
    assert text == _merged_lineage(copy)
    assert str(tmp_path) not in text and "seconds" not in text
    assert json.loads(text)["parent_path"] == "../model" and json.loads(text)["extra"]["adapter_path"] == "../sft/adapter"


def test_pefts_parent_path_is_made_portable_in_the_adapter_files(tmp_path):
    run = tmp_path / "run"
    adapter = run / "dpo" / "adapter"
    adapter.mkdir(parents=True)
    merged = str(run / "merged")
    (adapter / "README.md").write_text(f"---\nbase_model: {merged}\ntags:\n- base_model:adapter:{merged}\n---\n")
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": merged, "r": 8}, indent=2))
    portable_paths_in_files(adapter, {merged: portable_path(merged, adapter)}, ("README.md", "adapter_config.json", "absent.txt"))
    assert "base_model: ../../merged\n" in (adapter / "README.md").read_text()
    assert str(tmp_path) not in (adapter / "README.md").read_text()
    assert json.loads((adapter / "adapter_config.json").read_text()) == {"base_model_name_or_path": "../../merged", "r": 8}


def test_a_setting_only_dpo_reads_leaves_sft_and_merge_up_to_date(tmp_path):
    """`training.precompute_reference` (read by DPO only) used to mark SFT stale."""
    from stage1.config.typed import settings_to_dict
    from stage1.pipeline import build_steps
    from stage1.stages.config import load_config

    def settings(*overrides: str) -> dict[str, dict]:
        return {step.name: settings_to_dict(step.settings) for step in build_steps(load_config(None, list(overrides)), tmp_path)}

    before, after = settings(), settings("training.precompute_reference=true")
    assert before["sft"] == after["sft"] and before["merge"] == after["merge"]
    assert before["dpo"] != after["dpo"]
    assert settings("training.merge_dtype=bfloat16")["sft"] == before["sft"]
    assert settings("training.sample_prompts=3")["sft"] != before["sft"]  # SFT reads that one


def test_a_stage_recorded_under_the_former_rule_is_recognised(tmp_path):
    """A run whose SFT was fingerprinted with every training key stays up to date (no 32B retrain)."""
    from stage1.config.typed import settings_to_dict
    from stage1.io.run_dir import StageRecord, fingerprint
    from stage1.pipeline import _recorded_under_former_rule, build_steps
    from stage1.stages.config import load_config

    step = next(s for s in build_steps(load_config(None), tmp_path) if s.name == "sft")
    former = StageRecord("sft", fingerprint("sft", settings_to_dict(step.former), {}), ("adapter",), {}, {})
    assert _recorded_under_former_rule(step, former, {})
    assert not _recorded_under_former_rule(step, StageRecord("sft", "other", ("adapter",), {}, {}), {})
