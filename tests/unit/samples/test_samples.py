"""Policy negatives: samples scored by the evaluation criteria, best against worst, skips counted by
reason; mixed pairs take their configured share from each source."""

from __future__ import annotations

import pytest

from stage1.core.errors import ConfigError
from stage1.core.format import STOP_END, STOP_MAX_TOKENS, STOP_RUNAWAY, render_completion, render_prompt
from stage1.core.records import NegativeRecord, SFTExample
from stage1.core.seeds import sample_keys, sample_seeds
from stage1.pairs.settings import PairSettings
from stage1.pairs.stage import build_pairs
from stage1.samples.settings import PolicySettings
from stage1.samples.stage import SKIP_REASONS, choose_pair, policy_negatives, score_sample
from stage1.stages.config import load_config

EXAMPLE = SFTExample("7", "Name a primary colour.", "Red is a primary colour.", "general")
ALL = PolicySettings().selection_criteria


def _sample(number, text, stop=STOP_END, runaway=False, criteria=ALL):
    completion = render_completion(text) if stop == STOP_END else " " + text
    return score_sample(EXAMPLE, number, completion, text, stop, runaway, 5, criteria)


GOOD = "Blue is a primary colour."
CUT = "Blue is a"


def test_samples_are_scored_by_the_evaluation_criteria_that_apply():
    """A training instruction has no reference, constraint or topic: those criteria are n/a."""
    good, cut, empty = _sample(0, GOOD), _sample(1, CUT, stop=STOP_MAX_TOKENS), _sample(2, "", stop=STOP_MAX_TOKENS)
    assert good.verdicts == {"stopped_with_end": True, "no_runaway": True, "no_unwarranted_refusal": True, "refuses_when_expected": None,
                             "follows_constraint": None, "factually_correct": None, "on_topic": None, "not_degenerate": True}
    assert good.score == 1.0 and good.failed == ()
    assert cut.failed == ("stopped_with_end",) and cut.score == pytest.approx(3 / 4)
    assert set(empty.failed) == {"stopped_with_end", "no_runaway", "no_unwarranted_refusal", "not_degenerate"}
    refusal = _sample(3, "I'm sorry, but I cannot help with that.")
    assert refusal.failed == ("no_unwarranted_refusal",)


def test_a_request_that_should_be_declined_scores_a_refusal_as_wanted():
    """refusal_expected reaches the samples' scoring: a compliant answer fails, a refusal passes."""
    import dataclasses

    declined = dataclasses.replace(EXAMPLE, refusal_expected=True, response="I can't help with that.")
    complied = score_sample(declined, 0, " " + GOOD + "\nEND", GOOD, "end", False, 5, ALL)
    refused = score_sample(declined, 1, " I can't help with that.\nEND", "I can't help with that.", "end", False, 5, ALL)
    assert complied.verdicts["refuses_when_expected"] is False and "refuses_when_expected" in complied.failed
    assert refused.verdicts["refuses_when_expected"] is True and refused.verdicts["no_unwarranted_refusal"] is None


def test_rejected_is_the_worst_sample_and_its_failed_criteria_are_its_kind():
    samples = [_sample(0, GOOD), _sample(1, CUT, stop=STOP_MAX_TOKENS), _sample(2, "so so so so so so so so so so so so so", stop=STOP_MAX_TOKENS),
               _sample(3, "no no no no no no no no no no no no no", stop=STOP_MAX_TOKENS)]
    negative, reason = choose_pair(EXAMPLE, samples, ALL, "reference")
    assert reason is None
    assert samples[2].score == samples[3].score == 0.5  # tied worst: the first by sample number
    assert negative.completion == samples[2].completion_text and negative.method == "policy_sample_2"
    assert negative.kind == "policy:stopped_with_end+not_degenerate"
    assert negative.negative_source == "policy" and negative.chosen is None  # the pairs stage uses the reference
    assert NegativeRecord.from_dict(negative.to_dict()) == negative
    chosen_sample, _ = choose_pair(EXAMPLE, samples, ALL, "sample")
    assert chosen_sample.chosen == render_completion(GOOD) and chosen_sample.completion == samples[2].completion_text


def test_groups_without_a_pair_are_skipped_by_reason():
    good = [_sample(0, GOOD), _sample(1, "Yellow is a primary colour.")]
    assert choose_pair(EXAMPLE, good, ALL, "reference") == (None, "all_pass")
    bad = [_sample(0, CUT, stop=STOP_MAX_TOKENS), _sample(1, "Green\nInstruction: more", stop=STOP_RUNAWAY, runaway=True)]
    assert choose_pair(EXAMPLE, bad, ALL, "sample") == (None, "all_fail")
    assert choose_pair(EXAMPLE, bad, ALL, "reference")[1] is None  # the reference beats them
    broken_reference = SFTExample("8", "Name a primary colour.", "I'm sorry, but I cannot help with that.", "general")
    refusals = [score_sample(broken_reference, 0, render_completion("I cannot help with that, sorry."),
                             "I cannot help with that, sorry.", STOP_END, False, 5, ALL)]
    assert refusals[0].failed == ("no_unwarranted_refusal",)
    assert choose_pair(broken_reference, refusals, ALL, "reference") == (None, "tie")  # the reference fails the same way
    blank = [score_sample(EXAMPLE, 0, "", "", STOP_MAX_TOKENS, False, 1, ALL), _sample(1, GOOD)]
    assert choose_pair(EXAMPLE, blank, ALL, "reference") == (None, "empty")  # eos at once: no text to reject


def test_selection_criteria_decide_what_counts_as_worse():
    only_runaway = ("no_runaway",)
    samples = [_sample(0, CUT, stop=STOP_MAX_TOKENS, criteria=only_runaway), _sample(1, GOOD, criteria=only_runaway)]
    assert choose_pair(EXAMPLE, samples, only_runaway, "reference") == (None, "all_pass")  # a cut answer does not run away


def test_policy_negatives_count_every_instruction_once():
    examples = [EXAMPLE, SFTExample("9", "Name a fruit.", "An apple.", "general")]
    scored = {"7": [_sample(0, GOOD), _sample(1, CUT, stop=STOP_MAX_TOKENS)],
              "9": [score_sample(examples[1], 0, render_completion("A pear."), "A pear.", STOP_END, False, 3, ALL)]}
    negatives, counts = policy_negatives(examples, scored, PolicySettings(k=2))
    assert [n.instruction_id for n in negatives] == ["7"]
    assert counts["pairs"] + sum(counts["skipped"].values()) == counts["instructions"] == 2
    assert counts["skipped"] == {**dict.fromkeys(SKIP_REASONS, 0), "all_pass": 1}
    assert counts["by_kind"] == {"policy:stopped_with_end": 1} and counts["selection_criteria"] == list(ALL)


def test_sample_seeds_depend_on_what_the_sample_is():
    keys = sample_keys([EXAMPLE.id], 3)
    assert keys == [("7", 0), ("7", 1), ("7", 2)]
    seeds = sample_seeds(keys, PolicySettings(seed=1).seed, "policy")
    assert len(set(seeds)) == 3 and seeds == sample_seeds(keys, 1, "policy") != sample_seeds(keys, 2, "policy")


def test_policy_settings_are_checked_at_load():
    config = load_config("tiny", ["negatives.source=mixed", "negatives.policy.k=3", "negatives.policy.criteria=[no_runaway]"])
    assert config.negatives.policy.selection_criteria == ("no_runaway",) and config.negatives.source == "mixed"
    assert load_config("tiny", []).negatives.source == "rules"
    for override, field in [("negatives.policy.k=0", "negatives.policy.k"), ("negatives.policy.criteria=[ontopic]", "negatives.policy.criteria"),
                            ("negatives.policy_share=1.5", "negatives.policy_share"), ("negatives.source=humans", "negatives.source")]:
        with pytest.raises(ConfigError) as error:
            load_config("tiny", [override])
        assert field in str(error.value), (override, str(error.value))


def _examples(n):
    return [SFTExample(str(i), f"Question number {i}?", f"Answer number {i}.", "general") for i in range(n)]


def _mixed_negatives(examples):
    negatives = []
    for e in examples:
        negatives += [NegativeRecord(e.id, "off_topic", render_completion(f"Other text {e.id} {j}."), "rule") for j in range(3)]
        negatives += [NegativeRecord(e.id, "policy:stopped_with_end", f" cut {e.id} {j}", "policy_sample_0", negative_source="policy")
                      for j in range(3)]
    return negatives


# each group has 3 pairs of each source and room for 4: a source short of its share leaves places to the other
@pytest.mark.parametrize("share, policy_per_group", [(0.5, 2), (0.0, 1), (1.0, 3), (0.25, 1)])
def test_mixed_pairs_take_the_configured_share_from_each_source(share, policy_per_group):
    examples = _examples(6)
    settings = PairSettings(eval_fraction=0.0, max_pairs_per_instruction=4, max_length=100_000)
    train, _, counts = build_pairs(examples, _mixed_negatives(examples), settings, lambda p, c: 0, share)
    for e in examples:
        mine = [p for p in train if p.instruction_id == e.id]
        assert len(mine) == 4  # a source short of its share leaves its places to the other
        assert sum(p.negative_source == "policy" for p in mine) == policy_per_group
        assert all((p.negative_source == "policy") == p.negative_kind.startswith("policy:") for p in mine)
    assert counts["train"]["by_source"] == {k: v for k, v in {"policy": 6 * policy_per_group, "rules": 6 * (4 - policy_per_group)}.items() if v}


def test_a_policy_negative_with_its_own_chosen_pairs_against_that_sample():
    examples = _examples(1)
    negative = NegativeRecord("0", "policy:stopped_with_end", " cut", "policy_sample_1", negative_source="policy",
                              chosen=render_completion("A sampled answer."))
    train, _, _ = build_pairs(examples, [negative], PairSettings(eval_fraction=0.0, max_length=100_000), lambda p, c: 0)
    assert [(p.prompt, p.chosen, p.rejected, p.negative_source) for p in train] == [
        (render_prompt("Question number 0?"), render_completion("A sampled answer."), " cut", "policy")]


def test_a_rejected_sample_is_stored_as_read_back_and_passes_the_pair_contract():
    """The sampler may decode a carriage return or a decomposed accent; DPO refuses such a rejected."""
    from stage1.core.records import PreferencePair
    from stage1.train.data import pair_format_problem

    raw = " Cafe\u0301 au\r\nlait"
    sample = score_sample(EXAMPLE, 0, raw, "Cafe\u0301 au\nlait", STOP_MAX_TOKENS, False, 6, ALL)
    negative, _ = choose_pair(EXAMPLE, [sample], ALL, "reference")
    assert negative.completion == " Caf\u00e9 au\nlait"
    pair = PreferencePair(render_prompt(EXAMPLE.instruction), render_completion(EXAMPLE.response), negative.completion, "7",
                          "general", negative.kind, "train", "policy")
    assert pair_format_problem(pair) is None
