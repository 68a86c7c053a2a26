"""DPO with a new LoRA on the merged SFT model: reference, step-0 loss, rewards by kind, lineage.

The SFT -> merge -> DPO chain runs here on the tiny model (SFT and merge are shared with the SFT and
merge tests through tiny_training).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tiny_training import DPO_TRAIN_ARGS, LORA_ARGS, PAIR_KINDS, pair_dicts
from transformers import TrainerCallback

from stage1.core.errors import InputError, LineageError, TrainingError
from stage1.core.format import render_completion, render_prompt
from stage1.core.records import PreferencePair, RecordList
from stage1.io.lineage import read_lineage, weights_hash
from stage1.train.data import build_preference_rows
from stage1.train.dpo import run_train_dpo
from stage1.train.settings import TrainingSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dpo_dir(merged_dir, pair_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dpo-run") / "dpo"
    train, evaluation = pair_files
    run_train_dpo(TrainingSettings(), model_dir=merged_dir, train_path=train, eval_path=evaluation, out_dir=out,
                  dpo_args=DPO_TRAIN_ARGS, lora_args=LORA_ARGS)
    return out


def _history(run: Path) -> list[dict]:
    return [entry for entry in json.loads((run / "log_history.json").read_text()) if "loss" in entry]


def test_step_zero_loss_is_ln2_and_margins_are_zero(dpo_dir):
    first = _history(dpo_dir)[0]
    assert first["step"] == 1  # logged after the first update, computed on the step-0 weights
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-7)
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-7)
    assert first["rewards/accuracies"] == 0.0  # ties are not wins


def test_training_moves_the_loss_and_margins(dpo_dir):
    history = _history(dpo_dir)
    assert len(history) == DPO_TRAIN_ARGS["max_steps"]
    assert min(entry["loss"] for entry in history[1:]) < math.log(2) - 0.01
    assert max(entry["rewards/margins"] for entry in history[1:]) > 0


def test_manifest_reports_reward_accuracy_overall_and_by_kind(dpo_dir):
    manifest = json.loads((dpo_dir / "manifest.json").read_text())
    eval_pairs = pair_dicts()["eval"]
    assert manifest["counts"]["pairs_eval"] == len(eval_pairs) and manifest["counts"]["pairs_train"] == len(pair_dicts()["train"])
    assert set(manifest["by_kind"]) == {p["negative_kind"] for p in eval_pairs} and set(manifest["by_kind"]) <= set(PAIR_KINDS)
    assert sum(k["count"] for k in manifest["by_kind"].values()) == len(eval_pairs)
    accuracy = manifest["reward_accuracy"]
    assert 0.0 <= accuracy <= 1.0
    by_kind_mean = sum(k["reward_accuracy"] * k["count"] for k in manifest["by_kind"].values()) / len(eval_pairs)
    assert accuracy == pytest.approx(by_kind_mean)
    assert manifest["reward_margin"] == pytest.approx(manifest["rewards"]["mean_margin"])
    assert manifest["parent_kind"] == "merged" and manifest["beta"] == DPO_TRAIN_ARGS["beta"]


def test_lineage_names_the_merged_model_and_loading_elsewhere_fails(dpo_dir, merged_dir, tiny_model_dir):
    from stage1.hf.models import load_adapter, load_model

    lineage = read_lineage(dpo_dir / "adapter")
    assert lineage.kind == "dpo_adapter"
    assert lineage.parent_hash == weights_hash(merged_dir) != weights_hash(tiny_model_dir)
    assert sorted(lineage.trained_modules) == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    load_adapter(load_model(merged_dir), dpo_dir / "adapter")
    with pytest.raises(LineageError, match="weights"):
        load_adapter(load_model(tiny_model_dir), dpo_dir / "adapter")


def test_dpo_only_baseline_is_the_same_call_on_the_base(tiny_model_dir, pair_files, tmp_path):
    train, evaluation = pair_files
    manifest = run_train_dpo(TrainingSettings(), model_dir=tiny_model_dir, train_path=train, eval_path=evaluation,
                             out_dir=tmp_path / "dpo_only", dpo_args={**DPO_TRAIN_ARGS, "max_steps": 2}, lora_args=LORA_ARGS)
    assert manifest["parent_kind"] == "base"
    assert read_lineage(tmp_path / "dpo_only" / "adapter").parent_hash == weights_hash(tiny_model_dir)
    assert _history(tmp_path / "dpo_only")[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)


class _PoisonLoRA(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == 1:
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if "lora_B" in name:
                        param.fill_(float("inf"))


def test_non_finite_dpo_loss_stops_and_never_calls_the_poisoned_checkpoint_good(merged_dir, pair_files, tmp_path):
    """The LoRA is poisoned at the end of step 1, before checkpoint-1 is saved: that checkpoint holds
    inf weights, so it is neither "the last good checkpoint" nor one a rerun resumes from."""
    from stage1.train.callbacks import checkpoint_problem, last_checkpoint

    train, evaluation = pair_files
    with pytest.raises(TrainingError, match="no good checkpoint was written before it") as error:
        run_train_dpo(TrainingSettings(), model_dir=merged_dir, train_path=train, eval_path=evaluation, out_dir=tmp_path / "dpo",
                      dpo_args={**DPO_TRAIN_ARGS, "max_steps": 3, "save_steps": 1}, lora_args=LORA_ARGS, callbacks=(_PoisonLoRA(),))
    assert "checkpoint-1" not in str(error.value)
    assert (tmp_path / "dpo" / "checkpoints" / "checkpoint-1").is_dir()
    assert "not finite" in checkpoint_problem(tmp_path / "dpo" / "checkpoints" / "checkpoint-1")
    assert last_checkpoint(tmp_path / "dpo" / "checkpoints") is None
    assert not (tmp_path / "dpo" / "checkpoints" / "checkpoint-2").exists()
    assert not (tmp_path / "dpo" / "manifest.json").exists()


def _pair(prompt: str, chosen: str, rejected: str, kind: str = "off_topic") -> PreferencePair:
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, instruction_id="i1", category="general",
                          negative_kind=kind, split="train")


def test_pairs_are_tokenized_by_us_with_special_token_text_kept_as_text(qwen_tokenizer):
    pair = _pair(render_prompt("Say <|endoftext|> please."), render_completion("<|endoftext|>"), render_completion("No."))
    (row,) = build_preference_rows(qwen_tokenizer, [pair], max_length=64, overlong="error", source="pairs.jsonl").rows
    eos = qwen_tokenizer.eos_token_id
    assert eos not in row["prompt_ids"]
    assert row["chosen_ids"][-1] == eos and eos not in row["chosen_ids"][:-1]
    assert row["rejected_ids"][-1] == eos
    assert row["prompt_ids"][-2:] == [2582, 25]  # "Response", ":" -- the prompt ends at the colon
    assert qwen_tokenizer.decode(row["prompt_ids"] + row["chosen_ids"][:-1]) == pair.prompt + pair.chosen


def test_pairs_off_the_format_or_too_long_are_refused(qwen_tokenizer, tmp_path):
    source = tmp_path / "pairs.jsonl"
    source.write_text("{}\n{}\n")
    good = _pair(render_prompt("Q?"), render_completion("A."), render_completion("B."))
    trailing_space = _pair(render_prompt("Q?") + " ", render_completion("A."), render_completion("B."))
    with pytest.raises(InputError) as error:
        build_preference_rows(qwen_tokenizer, RecordList([good, trailing_space], [1, 2]), max_length=64, overlong="error", source=source)
    assert (error.value.field, error.value.line) == ("prompt", 2)
    long = _pair(render_prompt("Q?"), render_completion("A."), render_completion("word " * 100))
    with pytest.raises(InputError, match="dpo.max_length"):
        build_preference_rows(qwen_tokenizer, [good, long], max_length=32, overlong="error", source=source)
    kept = build_preference_rows(qwen_tokenizer, [good, long], max_length=32, overlong="drop", source=source)
    assert len(kept.rows) == 1 and kept.dropped_ids == ("i1",)


def test_rerunning_a_finished_dpo_adds_no_step_and_a_new_fingerprint_starts_over(merged_dir, pair_files, tmp_path, caplog):
    """DPO (and dpo_only, the same call) finishes from a checkpoint at max_steps without training
    past it (4 steps over 12 pairs at batch 4 are not whole epochs, where transformers resumed into
    a step 5), and discards checkpoints written under another stage fingerprint."""
    train, evaluation = pair_files
    common = dict(model_dir=merged_dir, train_path=train, eval_path=evaluation, out_dir=tmp_path / "dpo",
                  dpo_args={**DPO_TRAIN_ARGS, "max_steps": 4, "save_steps": 2}, lora_args=LORA_ARGS)
    first = run_train_dpo(TrainingSettings(), **common)
    again = run_train_dpo(TrainingSettings(), **common)
    assert again["resumed_from"].endswith("checkpoint-4") and again["counts"]["steps"] == first["counts"]["steps"] == 4
    assert again["rewards"] == first["rewards"]
    caplog.clear()
    retrained = run_train_dpo(TrainingSettings(), stage_fingerprint="pairs rerun", **common)
    assert retrained["resumed_from"] is None and "discarding 2 checkpoint(s)" in caplog.text
    assert retrained["counts"]["steps"] == 4
    assert retrained["rewards"] == pytest.approx(first["rewards"], rel=1e-4, abs=1e-6)


def test_every_logged_step_carries_the_log_prob_shift_of_each_side(dpo_dir):
    history = _history(dpo_dir)
    beta = DPO_TRAIN_ARGS["beta"]
    assert history[0]["logps/chosen_shift"] == pytest.approx(0.0, abs=1e-6)  # policy == reference at step 0
    for entry in history:
        assert entry["logps/chosen_shift"] == pytest.approx(entry["rewards/chosen"] / beta, rel=1e-5, abs=1e-7)
        assert entry["logps/rejected_shift"] == pytest.approx(entry["rewards/rejected"] / beta, rel=1e-5, abs=1e-7)
    assert any(abs(entry["logps/rejected_shift"]) > 1e-4 for entry in history[1:])  # training moved it


def test_manifest_summarises_the_chosen_log_prob_shift_by_kind_and_source(dpo_dir):
    from stage1.core.reward_metrics import LogProbShift, chosen_drop_warning

    manifest = json.loads((dpo_dir / "manifest.json").read_text())
    shift, beta = manifest["logp_shift"], manifest["beta"]
    assert shift["count"] == manifest["counts"]["pairs_eval"]
    assert shift["mean_chosen"] == pytest.approx(manifest["rewards"]["mean_chosen_reward"] / beta)
    assert shift["mean_rejected"] == pytest.approx(manifest["rewards"]["mean_rejected_reward"] / beta)
    assert 0.0 <= shift["chosen_fell_share"] <= 1.0 and shift["mean_chosen"] != 0.0
    assert set(shift["by_kind"]) == set(manifest["by_kind"])
    assert sum(group["count"] for group in shift["by_kind"].values()) == shift["count"]
    assert set(shift["by_source"]) == set(manifest["by_source"]) == {"rules"}  # the fixture's pairs have no source: rule-made
    assert manifest["by_source"]["rules"]["reward_accuracy"] == pytest.approx(manifest["reward_accuracy"])
    expected = chosen_drop_warning(LogProbShift(**{k: v for k, v in shift.items() if k not in ("by_kind", "by_source")}),
                                   manifest["max_chosen_logp_drop"])
    assert manifest["warnings"] == ([expected] if expected else [])


def test_a_chosen_drop_beyond_the_limit_is_warned(merged_dir, pair_files, tmp_path, caplog):
    """A limit of 0 nats warns whenever the eval chosen log-prob fell at all: the lr of the tiny
    test run (5e-3) lowers both sides, so the mean chosen shift after 2 steps is negative."""
    import logging

    train, evaluation = pair_files
    with caplog.at_level(logging.WARNING, logger="stage1"):
        manifest = run_train_dpo(TrainingSettings(max_chosen_logp_drop=0.0), model_dir=merged_dir, train_path=train,
                                 eval_path=evaluation, out_dir=tmp_path / "dpo", dpo_args={**DPO_TRAIN_ARGS, "max_steps": 2},
                                 lora_args=LORA_ARGS)
    fell = manifest["logp_shift"]["mean_chosen"] < 0
    assert bool(manifest["warnings"]) == fell
    assert any("below the reference" in record.getMessage() for record in caplog.records) == fell
    assert fell, "the test needs a run whose chosen log-prob fell; raise the lr or the steps"


def test_the_sft_term_remedy_builds_a_trainer_with_both_losses(merged_dir, pair_files, tmp_path):
    """dpo.loss_type [sigmoid, sft] with weights [1, 0.5]: the step-0 loss is ln 2 plus half the
    chosen answers' mean token NLL, so it is above ln 2 (plain sigmoid gives exactly ln 2)."""
    from stage1.stages.config import load_config

    config = load_config("tiny", ["dpo.loss_type=[sigmoid, sft]", "dpo.loss_weights=[1.0, 0.5]"])
    assert config.dpo["loss_type"] == ["sigmoid", "sft"] and config.dpo["loss_weights"] == [1.0, 0.5]
    train, evaluation = pair_files
    out = tmp_path / "dpo"
    manifest = run_train_dpo(TrainingSettings(), model_dir=merged_dir, train_path=train, eval_path=evaluation, out_dir=out,
                             dpo_args={**DPO_TRAIN_ARGS, "max_steps": 1, "loss_type": config.dpo["loss_type"],
                                       "loss_weights": config.dpo["loss_weights"]}, lora_args=LORA_ARGS)
    resolved = manifest["config"]["resolved"]  # read back from the DPOConfig the trainer was built with
    assert resolved["loss_type"] == ["sigmoid", "sft"] and resolved["loss_weights"] == [1.0, 0.5]
    first = _history(out)[0]
    assert first["loss"] > math.log(2) + 0.1


def test_precomputed_reference_log_probs_are_cached_and_reused_across_a_beta_sweep(merged_dir, pair_files, tmp_path, dpo_dir):
    """A second run with another beta reads the cached reference log-probabilities; the training matches."""
    train, evaluation = pair_files
    settings = TrainingSettings(precompute_reference=True, min_optimizer_steps=0)
    args = {**DPO_TRAIN_ARGS, "max_steps": 2, "save_steps": 2}
    first = run_train_dpo(settings, model_dir=merged_dir, train_path=train, eval_path=evaluation, out_dir=tmp_path / "dpo",
                          dpo_args=args, lora_args=LORA_ARGS)
    assert first["reference"]["precomputed"] and first["reference"]["cache_hits"] == 0
    cached = {split: Path(path) for split, path in first["reference"]["cache"].items()}
    assert all(path.is_file() for path in cached.values())
    record = json.loads(cached["train"].read_text())
    assert record["rows"] == first["counts"]["pairs_train"] and all(v < 0 for v in record["ref_chosen_logps"])
    swept = run_train_dpo(settings, model_dir=merged_dir, train_path=train, eval_path=evaluation, out_dir=tmp_path / "dpo",
                          dpo_args={**args, "beta": 0.3}, lora_args=LORA_ARGS, resume=False)
    assert swept["reference"]["cache_hits"] == 2 and swept["reference"]["cache"] == first["reference"]["cache"], "beta is not in the key"
    assert _history(tmp_path / "dpo")[0]["loss"] == pytest.approx(math.log(2), abs=1e-4), "the cached reference is the policy at step 0"
    longer = run_train_dpo(settings, model_dir=merged_dir, train_path=train, eval_path=evaluation, out_dir=tmp_path / "dpo",
                           dpo_args={**args, "max_length": 80}, lora_args=LORA_ARGS, resume=False)
    assert longer["reference"]["cache_hits"] == 0 and longer["reference"]["cache"] != first["reference"]["cache"], "max_length is"
    weighted = run_train_dpo(settings, model_dir=merged_dir, train_path=train, eval_path=evaluation, out_dir=tmp_path / "dpo",
                             dpo_args={**args, "ld_alpha": 0.5}, lora_args=LORA_ARGS, resume=False)
    assert weighted["reference"]["cache_hits"] == 0 and weighted["reference"]["cache"] != first["reference"]["cache"], "ld_alpha is"
    assert _history(tmp_path / "dpo")[0]["loss"] == pytest.approx(math.log(2), abs=1e-4), "the reference is weighted as the policy"
