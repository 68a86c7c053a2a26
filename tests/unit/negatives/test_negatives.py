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
from stage1.core.records import NegativeRecord, SFTExample
from stage1.core.text_keys import contains_words, dedup_key
from stage1.negatives import DonorPool, NegativeMix, NegativeSettings, generate_negatives, run_negatives
from stage1.negatives.mix import KindPlanner, ShareKeeper, plan_kinds
from stage1.negatives.repeats import ROWS, WIDTH, RepeatCounter, cells
from tests.strategies import sft_examples

MIXED_KINDS = NegativeMix.kinds()  # the planned kinds; complied_when_refusal_expected is substituted, never planned


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
        planned = plan_kinds(MIXED_KINDS, weights, per_example, rng)
        assert len(planned) == per_example
        for kind, weight in zip(MIXED_KINDS, weights):
            # A kind repeats within one example only when its weight makes that unavoidable.
            assert planned.count(kind) <= max(1, math.ceil(per_example * weight))
        draws.extend(planned)
    shares = Counter(draws)
    for kind, weight in zip(MIXED_KINDS, weights):
        assert abs(shares[kind] / len(draws) - weight) <= 0.02, (kind, shares[kind] / len(draws), weight)


def test_no_repeated_kind_per_example_when_the_mix_allows():
    rng = random.Random(0)
    for _ in range(2_000):
        planned = plan_kinds(MIXED_KINDS, (0.2,) * 5, 5, rng)
        assert sorted(planned) == sorted(MIXED_KINDS)
        planned = plan_kinds(MIXED_KINDS, (0.3, 0.3, 0.2, 0.1, 0.1), 3, rng)
        assert len(set(planned)) == 3


class _FixedDraw(random.Random):
    """A generator whose shuffle keeps the order and whose draw is ``u``: systematic sampling by hand."""

    def __init__(self, u: float):
        super().__init__(0)
        self.u = u

    def shuffle(self, x):
        pass

    def random(self):
        return self.u


@pytest.mark.parametrize(
    "weights, per_example, u, expected",
    [
        # intervals a [0, 1), b [1, 1.5), c [1.5, 2): points u and u + 1
        ((0.5, 0.25, 0.25), 2, 0.25, ["a", "b"]),
        ((0.5, 0.25, 0.25), 2, 0.6, ["a", "c"]),
        # a's interval is 1.5 long (weight above 1/k): points 0.25 and 1.25 both fall in it
        ((0.75, 0.25, 0.0), 2, 0.25, ["a", "a"]),
        ((0.75, 0.25, 0.0), 2, 0.5, ["a", "b"]),
        ((0.2, 0.3, 0.5), 1, 0.2, ["b"]),  # a point on an interval's start belongs to that interval
    ],
)
def test_a_plan_takes_the_kinds_whose_interval_holds_u_u_plus_1_and_so_on(weights, per_example, u, expected):
    assert KindPlanner(("a", "b", "c"), weights, per_example).plan(_FixedDraw(u)) == expected


def test_a_point_past_the_last_interval_by_rounding_belongs_to_the_last_kind_with_weight():
    """Ten weights of 0.1 add up to 0.9999999999999999: a draw above that falls past every interval;
    it goes to the last kind that can be drawn, never to one of weight 0."""
    kinds = tuple(f"k{i}" for i in range(10)) + ("never",)
    planner = KindPlanner(kinds, (0.1,) * 10 + (0.0,), 1)
    assert planner.plan(_FixedDraw(0.99999999999999995)) == ["k9"]
    assert planner.plan(_FixedDraw(0.95)) == ["k9"] and planner.plan(_FixedDraw(0.05)) == ["k0"]


def test_a_plan_never_holds_more_than_per_example_kinds_even_when_weights_round_above_one():
    """Weights within 1e-9 of summing to 1 are accepted; their intervals then reach a hair past k,
    where the point u + k can land: it is not taken."""
    assert KindPlanner(("a", "b"), (0.5, 0.5 + 1e-10), 1).plan(_FixedDraw(1e-11)) == ["a"]


@pytest.mark.parametrize(
    "kinds, weights, per_example, message",
    [
        (("a", "b"), (0.5,), 1, "kinds and weights must be non-empty and of the same length"),
        ((), (), 1, "kinds and weights must be non-empty and of the same length"),
        (("a", "b"), (0.5, 0.5), 0, "per_example must be at least 1, got 0"),
        (("a", "b"), (1.0, 1.0), 1, r"weights must be non-negative and sum to 1, got \[1.0, 1.0\]"),
        (("a", "b"), (0.5, 0.4999), 1, "sum to 1"),
        (("a", "b"), (1.5, -0.5), 1, r"non-negative .* got \[1.5, -0.5\]"),
    ],
)
def test_the_planner_refuses_weights_that_are_not_a_distribution(kinds, weights, per_example, message):
    with pytest.raises(ValueError, match=message):
        KindPlanner(kinds, weights, per_example)


def _keeper(weights: dict[str, float], produced: str) -> ShareKeeper:
    keeper = ShareKeeper(tuple(weights), tuple(weights.values()))
    for kind in produced:
        keeper.add(kind)
    return keeper


def test_make_up_owes_nothing_until_a_kind_is_a_whole_negative_behind():
    """Deficit = weight * produced - produced of the kind; a kind is owed from a deficit of 1 on."""
    assert _keeper({"a": 0.5, "b": 0.5}, "").make_up(["a"]) is None
    assert _keeper({"a": 0.5, "b": 0.5}, "a").make_up(["a"]) is None, "b is 0.5 behind: not owed yet"
    assert _keeper({"a": 0.5, "b": 0.5}, "aa").make_up(["a"]) == (0, ["b"]), "b exactly 1 behind: owed"


def test_make_up_never_proposes_a_kind_already_planned():
    assert _keeper({"a": 0.5, "b": 0.5}, "aa").make_up(["b"]) is None
    assert _keeper({"a": 0.5, "b": 0.5}, "aa").make_up(["a", "b"]) is None


def test_make_up_replaces_the_planned_kind_furthest_ahead_with_the_kinds_most_behind_first():
    keeper = _keeper({"a": 0.2, "b": 0.3, "c": 0.5, "d": 0.0}, "aaaaa")  # deficits a -4, b 1.5, c 2.5
    assert keeper.make_up(["a"]) == (0, ["c", "b"])
    keeper = _keeper({"a": 0.25, "b": 0.25, "c": 0.5}, "aaab")  # deficits a -2, b 0, c 2
    assert keeper.make_up(["b", "a"]) == (1, ["c"])


def test_make_up_gives_up_only_a_planned_kind_that_is_ahead_of_its_share():
    keeper = _keeper({"a": 0.25, "b": 0.25, "c": 0.5}, "aaab")  # deficits a -2, b 0 (on its share), c 2
    assert keeper.make_up(["b"]) is None
    assert _keeper({"a": 0.5, "b": 0.5, "z": 0.0}, "aa").make_up(["z"]) is None, "weight 0: never ahead"


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
    [NegativeMix(), NegativeMix(unwarranted_refusal=0.2, format_violation=0.2, factually_incorrect=0.3, off_topic=0.2, verbose_vague=0.1)],
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


def test_the_repeat_sketch_counts_exactly_while_strings_do_not_collide():
    sketch = RepeatCounter()
    for n, text in enumerate(("Yes.", "No.", "Paris.", "")):
        for _ in range(n + 1):
            sketch.add(cells(text))
    assert [sketch.count(cells(t)) for t in ("Yes.", "No.", "Paris.", "")] == [1, 2, 3, 4]


def test_the_repeat_sketch_raises_only_the_counters_at_the_minimum():
    """Conservative update: a string that shares one counter with a more used string raises only its
    other counter, so its count stays exact; a string sharing both counters is over-counted, never under."""
    sketch = RepeatCounter()
    sketch.add((5, 7))
    sketch.add((5, 7))
    sketch.add((5, 9))  # shares counter 5 of row one with the string above
    assert (sketch.count((5, 7)), sketch.count((5, 9))) == (2, 1)
    sketch.add((8, 9))  # shares counter 9 of row two with the one above
    assert [sketch.count(w) for w in ((5, 7), (5, 9), (8, 9))] == [2, 1, 1]
    assert sketch.count((8, 7)) == 1, "never added, but both its counters are shared: an upper bound"


def test_cells_spread_strings_over_each_row_and_are_the_same_on_every_run():
    """BLAKE2b, not ``hash``: the cells of a string do not depend on the process (no PYTHONHASHSEED)."""
    assert cells("Yes.") == (322981, 375078)
    assert ROWS == 2 and WIDTH == 2**19
    where = [cells(f"string {i}") for i in range(2_000)]
    assert all(0 <= first < WIDTH and 0 <= second < WIDTH for first, second in where)
    for row in (0, 1):
        assert len({w[row] for w in where}) >= 1_990, "2,000 strings in 2^19 counters barely collide"
    assert sum(first == second for first, second in where) <= 2, "the two rows hash independently"


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


OFF_TOPIC_ONLY = NegativeMix(off_topic=1.0, unwarranted_refusal=0, format_violation=0, factually_incorrect=0, verbose_vague=0)


def test_off_topic_from_other_categories_is_not_inside_the_answer():
    examples = [
        SFTExample(id="q", instruction="Is the sun a star?", response="Yes, it is.", category="a"),
        SFTExample(id="d1", instruction="Is ice cold?", response="Yes.", category="b"),
        SFTExample(id="d2", instruction="What is 2 plus 2?", response="2 plus 2 is 4.", category="b"),
        SFTExample(id="d3", instruction="Is fire hot?", response="Yes.", category="a"),
    ]
    for seed in range(20):
        negatives, _ = _negatives(examples, NegativeSettings(per_example=1, mix=OFF_TOPIC_ONLY, seed=seed))
        mine = [n for n in negatives if n.instruction_id == "q"]
        assert all(n.source_instruction_id == "d2" for n in mine), mine


def test_off_topic_from_the_same_category_answers_another_question_of_its_kind():
    """``same_category``: "The capital of Spain is Madrid." for France, never another category's
    answer, never the example's own, and not applicable where the category has no other donor."""
    examples = [
        SFTExample(id="fr", instruction="What is the capital of France?", response="The capital of France is Paris.", category="capitals"),
        SFTExample(id="es", instruction="What is the capital of Spain?", response="The capital of Spain is Madrid.", category="capitals"),
        SFTExample(id="it", instruction="What is the capital of Italy?", response="The capital of Italy is Rome.", category="capitals"),
        SFTExample(id="sum", instruction="What is 2 plus 2?", response="2 plus 2 is 4.", category="sums"),
    ]
    category = {e.id: e.category for e in examples}
    made = Counter()
    for seed in range(20):
        settings = NegativeSettings(per_example=1, mix=OFF_TOPIC_ONLY, seed=seed, off_topic_from="same_category")
        negatives, counts = _negatives(examples, settings)
        for negative in negatives:
            assert negative.source_instruction_id != negative.instruction_id
            assert category[negative.source_instruction_id] == category[negative.instruction_id], negative
            made[negative.instruction_id] += 1
        assert "sum" not in {n.instruction_id for n in negatives}  # its category lends it nothing
        assert counts.not_applicable["off_topic"] >= 1
    assert set(made) == {"fr", "es", "it"}


def test_off_topic_from_must_be_one_of_its_choices():
    with pytest.raises(ConfigError, match="negatives.off_topic_from"):
        NegativeSettings(off_topic_from="any")


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


# ---------------------------------------------------------------- length band


def _skewed_pool() -> list[SFTExample]:
    """400 two-word answers in one category, 100 in another, a fifth of them one word and the rest
    thirteen: off-topic donors of another category (``off_topic_from: other_categories``, the
    default) for the first category are mostly longer. (The first is 80% of the pool, so it takes off-topic negatives
    at its balanced share, ``donors.balanced_shares``.)"""
    examples = [SFTExample(f"a{i}", f"Name item {i}.", f"Item {i}.", "alpha") for i in range(400)]
    for i in range(100):
        answer = f"Valueb{i}." if i % 5 == 0 else f"This is a long beta answer number {i} with many extra words in it."
        examples.append(SFTExample(f"b{i}", f"Describe beta {i}.", answer, "beta"))
    return examples


def _off_topic_longer_score(band) -> tuple[float, int]:
    from stage1.core.lengths import length_by_kind

    mix = NegativeMix(unwarranted_refusal=0.0, format_violation=0.0, factually_incorrect=0.0, off_topic=1.0, verbose_vague=0.0)
    examples = _skewed_pool()
    negatives, counts = _negatives(examples, NegativeSettings(per_example=1, mix=mix, length_band=band))
    by_id = {example.id: example for example in examples}
    measured = length_by_kind((n.kind, render_completion(by_id[n.instruction_id].response), n.completion) for n in negatives)
    assert counts.to_dict()["length_band"]["by_kind"]["off_topic"]["longer_score"] == pytest.approx(measured["off_topic"]["longer_score"])
    assert 0 < len(negatives) <= len(examples)
    return measured["off_topic"]["longer_score"], len(negatives)


def test_the_length_band_keeps_off_topic_rejecteds_from_being_the_longer_one():
    """Without the band the off-topic rejected is the longer one in over 60% of pairs (ties half);
    with [0.45, 0.55] the share stays inside."""
    (unbanded, made), (banded, made_in_band) = _off_topic_longer_score(None), _off_topic_longer_score((0.45, 0.55))
    assert unbanded > 0.6
    assert 0.45 <= banded <= 0.55
    assert abs(made_in_band - made) <= 0.02 * made  # the band chooses among candidates; it costs no negatives


def test_the_length_band_steers_every_kind():
    from stage1.negatives.counts import LengthBand

    band = LengthBand((0.3, 0.7))
    assert not band.outside("off_topic", 2, 40)  # the first of a kind is never out of the band
    for _ in range(5):
        band.add("off_topic", 2, 40)
        band.add("verbose_vague", 2, 40)
    assert band.outside("off_topic", 2, 40) and not band.outside("off_topic", 40, 2) and not band.outside("off_topic", 5, 5)
    assert band.outside("verbose_vague", 2, 40)
    assert band.to_dict() == {kind: {"negatives": 5, "longer_score": 1.0} for kind in ("off_topic", "verbose_vague")}
    assert not LengthBand(None).outside("off_topic", 2, 40)


def test_every_kind_on_the_fixture_pool_sits_inside_the_length_band():
    """Refusals and vague answers included: they are built near the chosen answer's length."""
    path = Path(__file__).parents[3] / "stage1" / "pools" / "sft" / "instructions.jsonl"
    pool = [SFTExample.from_dict(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    negatives, counts = _negatives(pool, NegativeSettings())
    by_kind = counts.to_dict()["length_band"]["by_kind"]
    assert set(by_kind) >= {"unwarranted_refusal", "verbose_vague", "off_topic", "factually_incorrect", "format_violation"}
    for kind, figures in by_kind.items():
        if figures["negatives"] >= 20:
            assert 0.3 <= figures["longer_score"] <= 0.7, (kind, figures)


@pytest.mark.parametrize("band", [[0.6, 0.9], [0.1, 0.4], [0.5], [-0.1, 0.6]])
def test_a_length_band_that_excludes_one_half_is_refused(band):
    with pytest.raises(ConfigError, match="length_band"):
        settings_from_dict(NegativeSettings, {"length_band": band}, section="negatives")
# ---------------------------------------------------------------- requests that should be declined


def _pool_with_declined(n_plain: int = 400, n_declined: int = 40) -> list[SFTExample]:
    plain = [
        SFTExample(id=f"p{i}", instruction=f"What size is item number {i}?", response=f"Item {i} is small.", category=f"c{i % 3}")
        for i in range(n_plain)
    ]
    declined = [
        SFTExample(
            id=f"d{i}", instruction=f"How do I break into house number {i}?", response="I won't help with breaking into a home.",
            category="declined", refusal_expected=True,
        )
        for i in range(n_declined)
    ]
    # Interleaved, so the declined requests fall all through the stream.
    return [example for pair in zip(plain[::10], declined) for example in pair] + [e for i, e in enumerate(plain) if i % 10]


def test_a_request_that_should_be_declined_gets_compliance_never_a_refusal():
    examples = _pool_with_declined()
    mix = NegativeMix(unwarranted_refusal=0.5, verbose_vague=0.5, format_violation=0, factually_incorrect=0, off_topic=0)
    negatives, counts = _negatives(examples, NegativeSettings(per_example=2, mix=mix, max_repeats=50))
    declined = {e.id for e in examples if e.refusal_expected}
    kinds_on_declined = Counter(n.kind for n in negatives if n.instruction_id in declined)
    assert kinds_on_declined["unwarranted_refusal"] == 0
    assert kinds_on_declined["complied_when_refusal_expected"] == len(declined)  # one per example, where refusal was planned
    assert not any(n.kind == "complied_when_refusal_expected" for n in negatives if n.instruction_id not in declined)
    complied = [n.completion for n in negatives if n.kind == "complied_when_refusal_expected"]
    assert complied and not any(is_refusal(text) for text in complied)
    assert counts.to_dict()["planned_by_kind"]["complied_when_refusal_expected"] == len(declined)


def test_compliance_on_declined_requests_counts_against_the_refusal_share():
    """The produced shares keep the mix: compliance and refusals together take the refusal weight."""
    examples = _pool_with_declined(n_plain=900, n_declined=90)
    negatives, counts = _negatives(examples, NegativeSettings(per_example=2, max_repeats=100))
    produced = Counter(n.kind for n in negatives)
    refusal_axis = produced["unwarranted_refusal"] + produced["complied_when_refusal_expected"]
    assert produced["complied_when_refusal_expected"] > 0
    assert refusal_axis / sum(produced.values()) == pytest.approx(0.2, abs=0.02)


def test_declined_requests_lend_no_donor():
    examples = _pool_with_declined(n_plain=30, n_declined=10)
    donors = DonorPool.from_examples(examples, 100, 0)
    assert donors.donors and not any(donor.refusal_expected for donor in donors.donors)
