"""Negatives: the declared mix is honoured, every negative is really worse than the chosen answer,
no surface artefacts, bounded repeats, and the same seed gives the same bytes whatever the global
random state."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stage1.config.typed import settings_from_dict
from stage1.core.criteria import is_refusal
from stage1.core.errors import ConfigError, InputError
from stage1.core.format import END_MARKER, INSTRUCTION_TAG, render_completion
from stage1.core.records import NEGATIVE_KINDS, NegativeRecord, SFTExample
from stage1.core.text_keys import contains_words, dedup_key
from stage1.negatives import DonorPool, NegativeMix, NegativeSettings, generate_negatives, run_negatives
from stage1.negatives.mix import plan_kinds
from stage1.negatives.repeats import RepeatCounter, cells
from tests.strategies import sft_examples


def _negatives(examples, settings=NegativeSettings()):
    donors = DonorPool.from_examples(examples, settings.donor_pool_size, settings.seed)
    stream, counts = generate_negatives(examples, settings, donors)
    return list(stream), counts


# ---------------------------------------------------------------- the mix


@pytest.mark.parametrize("per_example", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(
    "weights",
    [(0.2, 0.2, 0.2, 0.2, 0.2), (0.4, 0.1, 0.3, 0.15, 0.05), (0.7, 0.1, 0.1, 0.1, 0.0), (0.0, 0.0, 1.0, 0.0, 0.0)],
)
def test_the_mix_is_honoured_over_ten_thousand_draws(per_example, weights):
    rng = random.Random(7)
    draws: list[str] = []
    while len(draws) < 10_000:
        planned = plan_kinds(NEGATIVE_KINDS, weights, per_example, rng)
        assert len(planned) == per_example
        for kind, weight in zip(NEGATIVE_KINDS, weights):
            # A kind repeats within one example only when its weight makes that unavoidable.
            assert planned.count(kind) <= max(1, math.ceil(per_example * weight))
        draws.extend(planned)
    shares = Counter(draws)
    for kind, weight in zip(NEGATIVE_KINDS, weights):
        assert abs(shares[kind] / len(draws) - weight) <= 0.02, (kind, shares[kind] / len(draws), weight)


def test_no_repeated_kind_per_example_when_the_mix_allows():
    rng = random.Random(0)
    for _ in range(2_000):
        planned = plan_kinds(NEGATIVE_KINDS, (0.2,) * 5, 5, rng)
        assert sorted(planned) == sorted(NEGATIVE_KINDS)
        planned = plan_kinds(NEGATIVE_KINDS, (0.3, 0.3, 0.2, 0.1, 0.1), 3, rng)
        assert len(set(planned)) == 3


def test_weights_must_sum_to_one_and_per_example_is_bounded():
    with pytest.raises(ConfigError, match="negatives.mix.*sum to 1.1"):
        NegativeMix(unwarranted_refusal=0.3)
    with pytest.raises(ConfigError, match="negatives.mix.off_topic"):
        NegativeMix(off_topic=-0.2, verbose_vague=0.6)
    for bad in (0, 6):
        with pytest.raises(ConfigError, match="negatives.per_example"):
            NegativeSettings(per_example=bad)
    settings = settings_from_dict(
        NegativeSettings,
        {"per_example": 3, "mix": {"unwarranted_refusal": 0.5, "format_violation": 0.5, "factually_incorrect": 0,
                                   "off_topic": 0, "verbose_vague": 0}},
        section="negatives",
    )
    assert settings.mix.weights() == (0.5, 0.5, 0.0, 0.0, 0.0)
    with pytest.raises(ConfigError, match="did you mean 'off_topic'"):
        settings_from_dict(NegativeSettings, {"mix": {"offtopic": 0.2}}, section="negatives")


def test_produced_kinds_follow_the_mix_when_every_kind_applies():
    examples = [
        SFTExample(id=f"e{i}", instruction=f"What is {i} plus {i + 1}?", response=f"{i} plus {i + 1} is {2 * i + 1}.",
                   category=("arithmetic", "sums", "numbers")[i % 3])
        for i in range(2_500)
    ]
    mix = NegativeMix(unwarranted_refusal=0.35, format_violation=0.25, factually_incorrect=0.2, off_topic=0.1, verbose_vague=0.1)
    negatives, counts = _negatives(examples, NegativeSettings(per_example=4, mix=mix, max_repeats=1_000))
    shares = Counter(n.kind for n in negatives)
    assert sum(counts.not_applicable.values()) == 0
    for kind, weight in zip(mix.kinds(), mix.weights()):
        assert abs(shares[kind] / len(negatives) - weight) <= 0.02


def _fixture_pool_cycled(count: int) -> list[SFTExample]:
    """The fixture pool cycled to ``count`` examples, each instruction made distinct (as bench.data does)."""
    path = Path(__file__).parents[3] / "stage1" / "pools" / "sft" / "instructions.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [
        SFTExample(id=f"x{i}", instruction=f"{row['instruction']} (item {i})", response=row["response"], category=row["category"])
        for i, row in ((i, rows[i % len(rows)]) for i in range(count))
    ]


@pytest.mark.parametrize(
    "mix",
    [NegativeMix(), NegativeMix(unwarranted_refusal=0.1, format_violation=0.2, factually_incorrect=0.4, off_topic=0.2, verbose_vague=0.1)],
)
def test_produced_kinds_follow_the_mix_when_some_kinds_do_not_apply_everywhere(mix):
    """Over 10,000 planned negatives on the fixture pool, factual changes do not apply to about a fifth
    of the examples (and capped strings to some more); the output still has the declared shares."""
    negatives, counts = _negatives(_fixture_pool_cycled(5_000), NegativeSettings(mix=mix))
    shares = Counter(n.kind for n in negatives)
    assert counts.not_applicable["factually_incorrect"] > 200, "the test needs kinds that do not always apply"
    assert counts.made_up["factually_incorrect"] > 0
    for kind, weight in zip(mix.kinds(), mix.weights()):
        assert abs(shares[kind] / len(negatives) - weight) <= 0.02, (kind, shares[kind] / len(negatives), weight)
    assert sum(counts.produced.values()) + sum(counts.not_applicable.values()) == sum(counts.planned.values())


# ---------------------------------------------------------------- repeats


def test_no_rejected_string_repeats_past_the_cap_for_any_kind():
    """A thousand yes/no examples: flipped answers, answers without END and runaways into a borrowed
    instruction each stay within max_repeats (they reached 207 and 29 when only templates were counted)."""
    examples = [
        SFTExample(id=f"y{i}", instruction=f"Is statement {i} true?", response=("Yes." if i % 2 else "No."), category=("a", "b")[i % 2])
        for i in range(1_000)
    ]
    negatives, counts = _negatives(examples)
    assert max(Counter(n.completion for n in negatives).values()) <= 10
    tails = Counter(n.completion.split("\n", 1)[1] for n in negatives if "\nInstruction:" in n.completion)
    assert tails and max(tails.values()) <= 10, "a borrowed instruction recurs under different answers at most max_repeats times"
    assert max(Counter(n.source_instruction_id for n in negatives if n.source_instruction_id).values()) <= 10
    assert counts.rejected["repeat_cap"] > 0 and counts.not_applicable["factually_incorrect"] > 0


@given(sft_examples(min_size=5, max_size=40), st.integers(1, 3), st.integers(0, 3))
def test_every_string_and_every_donor_is_used_at_most_max_repeats_times(examples, max_repeats, seed):
    """Whatever the examples (repeated answers included), no completion and no donor exceeds the cap."""
    examples = examples + [SFTExample(id=f"{e.id}-again", instruction=e.instruction + " Again.", response=e.response,
                                      category=e.category) for e in examples]
    negatives, _ = _negatives(examples, NegativeSettings(per_example=3, max_repeats=max_repeats, seed=seed))
    assert max(Counter(n.completion for n in negatives).values(), default=0) <= max_repeats
    assert max(Counter(n.source_instruction_id for n in negatives if n.source_instruction_id).values(), default=0) <= max_repeats


@given(st.lists(st.text(max_size=6), max_size=300))
def test_the_repeat_sketch_never_counts_below_the_truth(texts):
    """count(x) >= the true number of add(x), for any sequence (so the cap can never be exceeded)."""
    sketch, truth = RepeatCounter(), Counter()
    for text in texts:
        sketch.add(cells(text))
        truth[text] += 1
    assert all(sketch.count(cells(text)) >= n for text, n in truth.items())
    assert cells("Yes.") == cells("Yes.") and sketch.count(cells("never added \u2603")) == 0


# ---------------------------------------------------------------- negatives are negative


@given(sft_examples(), st.integers(0, 3), st.integers(1, 5))
def test_every_negative_is_worse_than_chosen(examples, seed, per_example):
    """No negative equals the chosen completion after normalisation; content-free kinds never contain
    the chosen answer; format violations break the format; factual ones change the answer."""
    negatives, counts = _negatives(examples, NegativeSettings(seed=seed, per_example=per_example))
    by_id = {e.id: e for e in examples}
    for negative in negatives:
        example = by_id[negative.instruction_id]
        chosen = render_completion(example.response)
        assert dedup_key(negative.completion) != dedup_key(chosen)
        if negative.kind in ("unwarranted_refusal", "off_topic", "verbose_vague"):
            assert not contains_words(negative.completion, example.response)
        if negative.kind == "format_violation":
            lines = negative.completion.split("\n")
            broken = (
                lines[-1].strip() != END_MARKER
                or any(line.startswith(INSTRUCTION_TAG) for line in lines)
                or negative.method == "truncated"
                or negative.method.startswith("ignores_constraint:")
            )
            assert broken, negative
        if negative.kind == "factually_incorrect":
            assert negative.completion.endswith("\nEND") and negative.completion != chosen
        assert ".." not in negative.completion or ".." in chosen
    assert sum(counts.produced.values()) == len(negatives)
    assert sum(counts.planned.values()) == len(examples) * per_example
    assert sum(counts.produced.values()) + sum(counts.not_applicable.values()) == sum(counts.planned.values())


@given(sft_examples(), st.integers(0, 3))
def test_same_seed_same_negatives_whatever_the_global_random_state(examples, seed):
    """Determinism: the global random state is never read."""
    random.seed(1)
    first, _ = _negatives(examples, NegativeSettings(seed=seed))
    random.seed(2)
    random.random()
    second, _ = _negatives(examples, NegativeSettings(seed=seed))
    assert first == second


@given(sft_examples(min_size=2))
def test_no_duplicate_negative_for_one_example(examples):
    """Two negatives of one example never share a completion."""
    negatives, _ = _negatives(examples, NegativeSettings(per_example=5))
    seen = Counter((n.instruction_id, n.completion) for n in negatives)
    assert max(seen.values()) == 1


def test_refusals_are_refusals_and_varied():
    examples = [SFTExample(id=f"e{i}", instruction=f"Describe item number {i}.", response=f"Item {i} is small.") for i in range(600)]
    mix = NegativeMix(unwarranted_refusal=0.5, verbose_vague=0.5, format_violation=0, factually_incorrect=0, off_topic=0)
    negatives, counts = _negatives(examples, NegativeSettings(per_example=2, mix=mix, max_repeats=5))
    refusals = [n.completion for n in negatives if n.kind == "unwarranted_refusal"]
    assert len(refusals) == 600
    assert all(is_refusal(text) for text in refusals), "every refusal must read as one to the evaluation"
    assert max(Counter(refusals).values()) <= 5, "one rejected string may repeat at most max_repeats times"
    assert max(Counter(n.completion for n in negatives if n.kind == "verbose_vague").values()) <= 5
    assert len(set(refusals)) > 150
    assert all(not text.lstrip()[0].islower() for text in refusals)


def test_not_applicable_is_counted_never_filled_with_a_canned_sentence():
    examples = [SFTExample(id="a", instruction="Say hello.", response="Hello there!", category="only")]
    mix = NegativeMix(factually_incorrect=0.5, off_topic=0.5, unwarranted_refusal=0, format_violation=0, verbose_vague=0)
    negatives, counts = _negatives(examples, NegativeSettings(per_example=2, mix=mix))
    assert negatives == []
    assert counts.not_applicable == Counter({"factually_incorrect": 1, "off_topic": 1})


def test_off_topic_comes_from_another_category_and_is_not_inside_the_answer():
    examples = [
        SFTExample(id="q", instruction="Is the sun a star?", response="Yes, it is.", category="a"),
        SFTExample(id="d1", instruction="Is ice cold?", response="Yes.", category="b"),
        SFTExample(id="d2", instruction="What is 2 plus 2?", response="2 plus 2 is 4.", category="b"),
        SFTExample(id="d3", instruction="Is fire hot?", response="Yes.", category="a"),
    ]
    mix = NegativeMix(off_topic=1.0, unwarranted_refusal=0, format_violation=0, factually_incorrect=0, verbose_vague=0)
    for seed in range(20):
        negatives, _ = _negatives(examples, NegativeSettings(per_example=1, mix=mix, seed=seed))
        mine = [n for n in negatives if n.instruction_id == "q"]
        assert all(n.source_instruction_id == "d2" for n in mine), mine


# ---------------------------------------------------------------- the stage


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(n=30):
    return [
        {"id": f"r{i}", "instruction": f"What is {i} times 3?", "response": f"{i} times 3 is {3 * i}.", "category": ("a", "b")[i % 2]}
        for i in range(n)
    ]


def test_stage_output_is_byte_identical_for_the_same_seed(tmp_path):
    source = _write(tmp_path / "train.jsonl", _rows())
    random.seed(5)
    first = run_negatives(NegativeSettings(), sft_path=source, out_dir=tmp_path / "a")
    random.seed(6)
    second = run_negatives(NegativeSettings(), sft_path=source, out_dir=tmp_path / "b")
    assert (tmp_path / "a" / "negatives.jsonl").read_bytes() == (tmp_path / "b" / "negatives.jsonl").read_bytes()
    assert first["output_hashes"] == second["output_hashes"]
    third = run_negatives(NegativeSettings(seed=1), sft_path=source, out_dir=tmp_path / "c")
    assert third["output_hashes"] != first["output_hashes"]
    rows = [NegativeRecord.from_dict(json.loads(line)) for line in (tmp_path / "a" / "negatives.jsonl").read_text().splitlines()]
    assert len(rows) == first["counts"]["negatives"] > 0
    assert first["counts"]["examples"] == 30 and first["config"]["mix"]["off_topic"] == 0.2
    assert "made_up_by_kind" in first["counts"] and "not_applicable_by_kind" in first["counts"]


def test_stage_refuses_bad_rows_naming_file_line_and_field(tmp_path):
    rows = _rows(3)
    rows[2]["response"] = 7
    source = _write(tmp_path / "train.jsonl", rows)
    with pytest.raises(InputError) as caught:
        run_negatives(NegativeSettings(), sft_path=source, out_dir=tmp_path / "out")
    assert (caught.value.line, caught.value.field) == (3, "response")
    assert not (tmp_path / "out").exists()
    manifest = run_negatives(NegativeSettings(), sft_path=source, out_dir=tmp_path / "out", on_bad_rows="skip")
    assert manifest["bad_rows"]["count"] == 1 and manifest["counts"]["input_rows"] == 3
    with pytest.raises(InputError, match="file not found"):
        run_negatives(NegativeSettings(), sft_path=tmp_path / "missing.jsonl", out_dir=tmp_path / "x")
