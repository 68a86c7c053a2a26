"""Learning tests on the session's tiny run (the model organism): the method did what it is for.

Each reads the finished run directory the session shares (``tiny_run``) and loads at most two small
models: SFT lowers the held-out response loss, DPO raises the held-out margin over its reference,
and the SFT model stops at END where the base model does not.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def _heldout_response_loss(model_dir, heldout_path) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stage1.train.handoff import mean_token_loss
    from stage1.train.merge import fidelity_rows

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = fidelity_rows(tokenizer, heldout_path, count=64)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return mean_token_loss(model, rows)


def test_sft_lowers_the_heldout_response_loss(tiny_run):
    """Mean loss on the response and END tokens of SFT's held-out rows: the merged SFT model well
    below the base model (rows it never trained on)."""
    run_dir, _ = tiny_run
    heldout = run_dir / "sft_data" / "heldout.jsonl"
    base = _heldout_response_loss(run_dir / "model", heldout)
    sft = _heldout_response_loss(run_dir / "merged", heldout)
    assert sft < 0.7 * base, (base, sft)


def _pair_margins(model, tokenizer, rows):
    import torch

    from stage1.train.logprobs import completion_log_probs

    margins = []
    for row in rows:
        logps = []
        for side in ("chosen", "rejected"):
            prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            completion = tokenizer(row[side], add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + completion])
            mask = torch.tensor([[0] * len(prompt) + [1] * len(completion)])
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "completion_mask": mask}
            with torch.no_grad():
                logps.append(float(completion_log_probs(model, batch)[0]))
        margins.append(logps[0] - logps[1])
    return margins


def test_dpo_raises_the_heldout_margin_over_its_reference(tiny_run):
    """On the eval pairs (never trained on), read from the pairs file itself:
    [log pi(chosen) - log pi(rejected)] - [same under the reference] is positive on average and for
    most pairs. A swapped chosen/rejected would make it negative."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, _ = tiny_run
    rows = [json.loads(line) for line in (run_dir / "pairs" / "eval.jsonl").read_text().splitlines()][:48]
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "merged")
    reference = AutoModelForCausalLM.from_pretrained(run_dir / "merged")
    before = _pair_margins(reference, tokenizer, rows)
    policy = PeftModel.from_pretrained(reference, run_dir / "dpo" / "adapter")
    after = _pair_margins(policy, tokenizer, rows)
    gains = [a - b for a, b in zip(after, before)]
    assert sum(gains) / len(gains) > 0.5
    assert sum(g > 0 for g in gains) > 0.75 * len(gains)


def test_the_sft_model_stops_at_end_where_the_base_model_does_not(tiny_run):
    run_dir, _ = tiny_run
    rates = json.loads((run_dir / "eval" / "results.json").read_text())["rates"]
    assert rates["base"]["stopped_with_end"]["rate"] <= 0.1
    assert rates["sft"]["stopped_with_end"]["rate"] >= 0.8
