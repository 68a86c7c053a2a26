"""Learning tests on the session's shared organism run (the README's main command, the tiny default):
each stage moved its model the way it trains it.

Nothing is trained here: the run's models and files are loaded as evaluation loads them
(``stage1.eval.runner.load_variant``) and scored.

- SFT lowers the held-out response loss: the SFT held-out rows, masked exactly as SFT trains
  (``stage1.core.masking.build_sft_features``: the loss on the completion, ``END`` and the eos).
- DPO raises the held-out margin over SFT on the eval pairs as the pairs **file** states them
  (``stage1.train.dpo_checks.file_margins``, never the trainer's columns).
- SFT stops at ``END`` where the base does not: a significant gain in ``results.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from stage1.core.masking import IGNORE_INDEX, build_sft_features, eos_token_id
from stage1.core.records import PreferencePair, SFTExample
from stage1.eval.runner import load_variant
from stage1.eval.settings import VariantSpec, variants_in_run
from stage1.io.layout import RunLayout
from stage1.io.records import read_records
from stage1.train.data import UNLIMITED
from stage1.train.dpo_checks import file_margins
from stage1.train.logprobs import completion_log_probs

pytestmark = pytest.mark.slow

#: Rows per forward: the tiny model's logits are only taken at the scored positions.
BATCH = 16
#: SFT must lower the held-out loss by at least this share of the base loss. On the organism the
#: default run measured base 3.418 and SFT 0.626 nats per token on its 46 held-out rows (581
#: tokens, 81.7% lower, 2026-12-06; the base never writes the END line). The floor is a quarter of
#: that gain; a model equal to the base gains 0.
MIN_SFT_GAIN_SHARE = 0.2


def _variants(run_dir: Path) -> dict[str, VariantSpec]:
    """The run's evaluation variants by name, with the SFT hand-off its config recorded."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    training = config.get("training") or {}
    specs = variants_in_run(RunLayout(run_dir), training.get("quantization", "none"), training.get("sft_handoff", "merge"))
    return {spec.name: spec for spec in specs}


def _load(spec: VariantSpec):
    return load_variant(spec, dtype="float32", device="cpu", parent_hash=None)


def _mean_response_nll(model, rows: list) -> tuple[float, int]:
    """Mean negative log-likelihood per supervised token (labels != -100) over ``rows``
    (``SFTFeatures``), token-weighted as SFT's loss is; and how many tokens were scored."""
    pad = rows[0].input_ids[-1]  # the eos: any id works under a zero attention mask and completion mask
    total, tokens = 0.0, 0
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        width = max(len(row.input_ids) for row in chunk)
        batch = {
            "input_ids": torch.tensor([row.input_ids + [pad] * (width - len(row.input_ids)) for row in chunk]),
            "attention_mask": torch.tensor([row.attention_mask + [0] * (width - len(row.input_ids)) for row in chunk]),
            "completion_mask": torch.tensor([[int(label != IGNORE_INDEX) for label in row.labels] + [0] * (width - len(row.labels))
                                             for row in chunk]),
        }
        with torch.no_grad():
            total -= float(completion_log_probs(model, batch).sum())
        tokens += int(batch["completion_mask"][:, 1:].sum())
    return total / tokens, tokens


def test_sft_lowers_the_heldout_response_loss(organism_run):
    run_dir, _ = organism_run
    variants = _variants(run_dir)
    examples = read_records(RunLayout(run_dir).sft_heldout, SFTExample)
    assert len(examples) >= 4, f"too few held-out rows to measure: {len(examples)}"
    losses = {}
    for name in ("base", "sft"):
        model, tokenizer = _load(variants[name])
        rows = [build_sft_features(tokenizer, e.instruction, e.response, UNLIMITED) for e in examples]
        assert all(row.input_ids[-1] == eos_token_id(tokenizer) for row in rows)
        losses[name], tokens = _mean_response_nll(model, rows)
    gain = losses["base"] - losses["sft"]
    print(f"held-out response NLL over {len(examples)} rows, {tokens} tokens: base {losses['base']:.5f}, "
          f"sft {losses['sft']:.5f}, gain {gain:.5f} ({gain / losses['base']:.3%} of base)")
    assert gain >= MIN_SFT_GAIN_SHARE * losses["base"], losses


def test_dpo_raises_the_heldout_margin_over_sft(organism_run):
    run_dir, _ = organism_run
    variants = _variants(run_dir)
    sft, dpo = variants["sft"], variants["dpo"]
    # file_margins' reference is the model with its adapter disabled: the SFT model only when DPO's
    # adapter sits on the merged SFT model (sft_handoff: merge, the tiny run's).
    assert dpo.model_dir == sft.model_dir and sft.adapter_dir is None and dpo.adapter_dir is not None, (sft, dpo)
    pairs = read_records(RunLayout(run_dir).pairs_eval, PreferencePair)
    assert len(pairs) >= 4, f"too few eval pairs to measure: {len(pairs)}"
    model, tokenizer = _load(dpo)
    margins, skipped = file_margins(model, tokenizer, pairs, max_length=None, batch_size=BATCH)
    mean = sum(margins) / len(margins)
    positive = sum(margin > 0 for margin in margins)
    print(f"DPO margin over SFT on {len(margins)} eval pairs: mean {mean:.5f} nats, {positive} positive")
    assert skipped == 0 and len(margins) == len(pairs)
    assert mean > 0, margins


def test_sft_stops_at_end_where_the_base_does_not(organism_run):
    run_dir, _ = organism_run
    results = json.loads(RunLayout(run_dir).results.read_text())
    q = results["statistics"]["q"]
    [cell] = [c for c in results["comparisons"]
              if (c["before"], c["after"], c["criterion"]) == ("base", "sft", "stopped_with_end")]
    rates = {name: results["rates"][name]["stopped_with_end"]["rate"] for name in ("base", "sft")}
    print(f"stopped_with_end: base {rates['base']:.3f}, sft {rates['sft']:.3f}; lift {cell['lift']:.3f} over "
          f"{cell['n']} items ({cell['n01']} gained, {cell['n10']} lost), p {cell['mcnemar']['p_value']:.3g}, "
          f"adjusted {cell['p_adjusted']:.3g} (q {q})")
    assert rates["base"] < rates["sft"], rates
    assert cell["lift"] > 0 and cell["p_adjusted"] is not None and cell["p_adjusted"] <= q, cell
    assert cell["significant"], cell


# What each negative kind teaches against, by the criterion that scores it: unwarranted refusal,
# format violation (a missing END, a runaway), factually incorrect, off-topic.
DPO_TARGETS = ("no_unwarranted_refusal", "stopped_with_end", "no_runaway", "factually_correct", "on_topic")


def _cells(results: dict, before: str, after: str) -> dict[str, dict]:
    return {c["criterion"]: c for c in results["comparisons"] if (c["before"], c["after"]) == (before, after)}


def test_the_default_run_tells_the_methods_story(organism_run):
    """On the organism (the tiny default): base -> SFT gains significantly on the stop and on facts,
    and SFT answers in non-degenerate text; SFT -> DPO loses nothing significantly and gains
    significantly on a criterion its negatives target; the DPO-only baseline is evaluated beside it."""
    run_dir, _ = organism_run
    results = json.loads(RunLayout(run_dir).results.read_text())
    sft, dpo = _cells(results, "base", "sft"), _cells(results, "sft", "dpo")
    for name, cell in [*(("base->sft " + k, v) for k, v in sft.items()), *(("sft->dpo " + k, v) for k, v in dpo.items())]:
        print(f"{name}: {cell['rate_before']:.3f} -> {cell['rate_after']:.3f}, adjusted p {cell['p_adjusted']}")
    for criterion in ("stopped_with_end", "factually_correct"):
        assert sft[criterion]["significant"] and sft[criterion]["lift"] > 0, sft[criterion]
    assert results["rates"]["sft"]["not_degenerate"]["rate"] >= 0.8
    assert not [c for c in dpo.values() if c["significant"] and c["lift"] < 0], "DPO made SFT significantly worse"
    assert [k for k in DPO_TARGETS if dpo[k]["significant"] and dpo[k]["lift"] > 0], "no significant DPO gain on a target"
    assert "dpo_only" in results["rates"]
